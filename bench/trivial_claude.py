"""A trivial ``claude -p`` for benchmarks: just enough stream-json, about as fast as Python starts.

Run as ``python -I -S trivial_claude.py ARGS...`` (stdlib only, no site import). It ignores its
flags except ``--input-format stream-json`` and prints ``system/init``, an assistant text and a
successful ``result``, each as one flushed line. Unlike ``tests/fakes/fake_claude.py`` it checks
nothing: it is the bridge alone that is being measured.

The prompt (all of stdin; with ``--input-format stream-json``, the first user message, after
which it exits without waiting for EOF, as a warm process would) may hold ``key=value`` words:

``sleep=S``   wait S seconds before the answer
``stamps=N``  print N ``tool_use`` events, each named ``t<wall-clock time at printing>``, so a
              client can tell how long a progress notification took to reach it
``every=S``   seconds between stamps (default 0.01)
"""

import json
import sys
import time

SESSION = "00000000-0000-4000-8000-000000000000"


def main() -> int:
    began = time.monotonic()
    options = _options(_prompt(sys.argv[1:]))
    _emit({"type": "system", "subtype": "init", "session_id": SESSION, "model": "bench",
           "tools": [], "mcp_servers": []})
    every = float(options.get("every", "0.01"))
    for index in range(int(options.get("stamps", "0"))):
        if index:
            time.sleep(every)
        _emit(_assistant({"type": "tool_use", "id": f"toolu_{index}",
                          "name": f"t{time.time():.6f}", "input": {}}))
    time.sleep(float(options.get("sleep", "0")))
    _emit(_assistant({"type": "text", "text": "ok"}))
    _emit({"type": "result", "subtype": "success", "is_error": False, "result": "ok",
           "session_id": SESSION, "total_cost_usd": 0.0, "num_turns": 1, "usage": {},
           "duration_ms": int((time.monotonic() - began) * 1000)})
    return 0


def _prompt(argv: list[str]) -> str:
    if "--input-format=stream-json" in argv or _follows(argv, "--input-format") == "stream-json":
        for line in sys.stdin:
            if line.strip():
                message = json.loads(line)
                if message.get("type") == "user":
                    return json.dumps(message)
        return ""
    return sys.stdin.read()


def _follows(argv: list[str], flag: str) -> str | None:
    return argv[argv.index(flag) + 1] if flag in argv[:-1] else None


def _options(prompt: str) -> dict[str, str]:
    words = prompt.replace('"', " ").split()
    return dict(word.split("=", 1) for word in words if "=" in word)


def _assistant(block: dict[str, object]) -> dict[str, object]:
    return {"type": "assistant", "message": {"role": "assistant", "content": [block]},
            "parent_tool_use_id": None, "session_id": SESSION}


def _emit(event: dict[str, object]) -> None:
    sys.stdout.write(json.dumps(event) + "\n")
    sys.stdout.flush()


if __name__ == "__main__":
    sys.exit(main())
