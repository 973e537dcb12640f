"""`python -m service.api` / `cxr-api`: serve the API with uvicorn.

Exit status: 1 when the model cannot be served (the reason, naming the file, is the last line
on stderr), 2 on invalid configuration (one line per bad variable, checked before the heavy
imports); on SIGTERM or SIGINT uvicorn shuts down gracefully and then re-raises the signal, so
the process ends as killed by it (the convention for signalled exits). Without API_KEYS the
server binds 127.0.0.1 only, whatever API_HOST says.
"""

import logging
import os
import sys
from collections.abc import Mapping

from pydantic import ValidationError

from service.api.settings import Settings

logger = logging.getLogger("service.api")
EXIT_MODEL_NOT_LOADED = 1
EXIT_BAD_CONFIGURATION = 2


def configuration_errors(error: ValidationError) -> list[str]:
    """'API_PORT: Input should be ...' per error, never quoting the value (it may be a key)."""
    lines = []
    for item in error.errors(include_url=False, include_input=False):
        variable = str(item["loc"][0]).upper() if item["loc"] else "configuration"
        lines.append(f"{variable}: {item['msg']}")
    return lines


def main(environ: Mapping[str, str] | None = None) -> int:
    try:
        settings = Settings.from_environ(os.environ if environ is None else environ)
    except ValidationError as error:
        for line in configuration_errors(error):
            print(f"cxr-api: invalid configuration: {line}", file=sys.stderr)
        return EXIT_BAD_CONFIGURATION
    return serve(settings)


def serve(settings: Settings) -> int:
    import uvicorn  # the heavy imports (FastAPI, onnxruntime) only once the settings are valid

    from service.api.app import create_app
    from service.api.logging_config import configure_logging

    configure_logging(
        settings.log_format, settings.log_level, [key.get_secret_value() for key in settings.api_keys]
    )
    if not settings.auth_enabled:
        logger.warning(
            "API_KEYS is empty: authentication is off, so the server listens on %s only%s",
            settings.bind_host,
            f" (API_HOST={settings.api_host} ignored)" if settings.host_forced_to_loopback else "",
        )

    server: uvicorn.Server | None = None

    def stop_server() -> None:
        if server is not None:
            server.should_exit = True

    app = create_app(settings, on_load_failure=stop_server)
    config = uvicorn.Config(
        app,
        host=settings.bind_host,
        port=settings.api_port,
        log_config=None,  # configure_logging already routes uvicorn's loggers
        access_log=False,  # the request-context middleware logs each request with its id
        server_header=False,
        lifespan="on",
    )
    server = uvicorn.Server(config)
    server.run()
    load_error = app.state.service.load_error
    if load_error is not None:
        print(f"cxr-api: model not loaded: {load_error}", file=sys.stderr)
        return EXIT_MODEL_NOT_LOADED
    return 0


if __name__ == "__main__":
    sys.exit(main())
