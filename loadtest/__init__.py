"""Load testing of the API with locust (make loadtest)."""
