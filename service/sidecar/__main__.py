"""`python -m service.sidecar` (console script cxr-gradcam): serve Grad-CAM with uvicorn."""

import logging
import os
import sys

import uvicorn
from pydantic import ValidationError

from service.sidecar.app import create_app
from service.sidecar.settings import Settings


def main() -> None:
    try:
        settings = Settings()
    except ValidationError as error:
        sys.exit(f"cxr-gradcam: invalid settings: {error}")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # TensorFlow's C++ start-up chatter
    logging.basicConfig(
        level=settings.log_level.upper(),
        stream=sys.stdout,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    servers: list[uvicorn.Server] = []

    def stop_server() -> None:
        for server in servers:
            server.should_exit = True

    app = create_app(settings, on_load_failure=stop_server)
    server = uvicorn.Server(
        uvicorn.Config(
            app,
            host=settings.gradcam_host,
            port=settings.gradcam_port,
            log_config=None,
            log_level=settings.log_level,
            timeout_graceful_shutdown=10,
        )
    )
    servers.append(server)
    code = 0
    try:
        server.run()  # on SIGTERM uvicorn shuts down, then re-raises the signal: the process ends here
    except KeyboardInterrupt:
        pass
    except SystemExit as exit_:  # uvicorn exits this way when it cannot bind the port
        code = exit_.code if isinstance(exit_.code, int) else 1
    state = getattr(app.state, "sidecar", None)
    if not server.started or state is None or state.load_error:
        code = code or 1
    logging.shutdown()
    # os._exit: a model load still running on the TensorFlow thread must not hold up the exit.
    os._exit(code)


if __name__ == "__main__":
    main()
