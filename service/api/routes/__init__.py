"""One APIRouter per concern; app.py includes them."""
