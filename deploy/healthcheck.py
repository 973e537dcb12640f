"""Container health probe: exit 0 when GET /healthz on this container answers 200, else 1.

Standard library only (the slim images have no curl). Used by the Dockerfile's HEALTHCHECK and the
compose file, and run outside Docker by tests/deploy/test_containers.py, so the probe itself is
tested. The port is read from the environment variable named by --port-env, so a container whose
port is changed with API_PORT or GRADCAM_PORT is still probed on the port it listens on.
"""

import argparse
import os
import sys
import urllib.error
import urllib.request


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port-env", default="API_PORT", help="variable holding the port (default API_PORT)")
    parser.add_argument("--default-port", type=int, default=8000, help="port when the variable is unset")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--path", default="/healthz")
    parser.add_argument(
        "--timeout", type=float, default=4.0, help="seconds (keep below HEALTHCHECK --timeout)"
    )
    args = parser.parse_args(argv)
    port = os.environ.get(args.port_env) or str(args.default_port)
    url = f"http://{args.host}:{port}{args.path}"
    try:
        with urllib.request.urlopen(url, timeout=args.timeout) as response:
            status = response.status
    except urllib.error.HTTPError as error:
        status = error.code
    except (urllib.error.URLError, OSError) as error:
        print(f"unhealthy: {url}: {error}", file=sys.stderr)
        return 1
    if status != 200:
        print(f"unhealthy: {url} answered {status}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
