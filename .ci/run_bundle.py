"""Start an unpacked .mcpb bundle exactly as its manifest says, and list its tools.

    python .ci/run_bundle.py UNPACKED_DIR EXPECTED_TOOLS [key=value ...]

The ``key=value`` pairs are user_config answers; a field without an answer takes its
manifest default, as Claude Desktop does. ``${__dirname}``, ``${HOME}`` and
``${user_config.KEY}`` are substituted in the command, args and env (the rules of
@anthropic-ai/mcpb's getMcpConfigForManifest). The server gets only the variables an MCP
client passes by default plus the manifest's env, never this shell's environment; only
``UV_*`` settings pass, standing for the host's configuration of the uv it runs.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

from mcp.client.stdio import get_default_environment

HERE = Path(__file__).resolve().parent


def resolve(manifest: dict, bundle: Path, answers: dict[str, str]) -> dict:
    config = manifest["server"]["mcp_config"]
    values = {"__dirname": str(bundle), "HOME": str(Path.home()), "/": os.sep,
              "pathSeparator": os.sep}
    for key, option in manifest.get("user_config", {}).items():
        if key in answers:
            values[f"user_config.{key}"] = answers[key]
        elif "default" in option:
            values[f"user_config.{key}"] = str(option["default"])
        elif option.get("required"):
            sys.exit(f"user_config.{key} is required: pass {key}=VALUE")

    def substitute(text: str) -> str:
        return re.sub(r"\$\{([^}]+)\}", lambda m: values.get(m.group(1), m.group(0)), text)

    return {"command": substitute(config["command"]),
            "args": [substitute(arg) for arg in config.get("args", [])],
            "env": {name: substitute(value) for name, value in config.get("env", {}).items()}}


def main(argv: list[str]) -> int:
    bundle, expected, *pairs = argv
    bundle_dir = Path(bundle).resolve()
    manifest = json.loads((bundle_dir / "manifest.json").read_text(encoding="utf-8"))
    answers = dict(pair.split("=", 1) for pair in pairs)
    server = resolve(manifest, bundle_dir, answers)
    # Desktop runs "uv" with the uv it manages; here, the uv installed in CI's venv.
    command = shutil.which(server["command"], path=os.path.dirname(sys.executable)) \
        or server["command"]
    host_uv = {name: value for name, value in os.environ.items() if name.startswith("UV_")}
    env = {**get_default_environment(), **host_uv, **server["env"]}
    print(f"starting: {server['command']} {' '.join(server['args'])}")
    return subprocess.call([sys.executable, str(HERE / "stdio_tools_list.py"), expected, "--",
                            command, *server["args"]], env=env)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
