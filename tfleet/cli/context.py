"""The context file: how the CLI finds a local fleet without flags or variables.

`tfleet dev` writes it when its fleet is up and removes it at a clean stop; the operator
commands read it when neither ``--etcd`` nor ``TFLEET_ETCD_ENDPOINTS`` is given
(precedence: flag > environment > context file > built-in default). It is a small JSON object::

    {"endpoints": "http://127.0.0.1:23790", "prefix": "/tfleet", "pid": 4242, "run_dir": "/tmp/tfleet-dev"}

Where: ``$TFLEET_CONTEXT`` if set (tests, several fleets), else
``$XDG_CONFIG_HOME/tfleet/context.json`` (``~/.config/tfleet/context.json``). A config dir
rather than the run dir, because the CLI must find it without knowing the run dir; one file,
because the newest `tfleet dev` is the fleet a user means (an older fleet keeps running, and
its own commands pass ``--etcd``).

Daemons (agent, controller) never read it: a production host must not pick up a developer's
local fleet by accident.
"""

from __future__ import annotations

import json
import os
import pathlib
import tempfile
from dataclasses import asdict, dataclass
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field

from tfleet.schema import Address, SchemaError, ShortText, parse

CONTEXT_ENV = "TFLEET_CONTEXT"
PID_MAX = 2**31 - 1  # pid_t is a 32-bit int; os.kill refuses more (OverflowError)


def context_path() -> pathlib.Path:
    explicit = os.environ.get(CONTEXT_ENV)
    if explicit:
        return pathlib.Path(explicit)
    config = os.environ.get("XDG_CONFIG_HOME") or str(pathlib.Path.home() / ".config")
    return pathlib.Path(config) / "tfleet" / "context.json"


@dataclass(frozen=True)
class FleetContext:
    endpoints: str
    prefix: str
    pid: int
    run_dir: str

    @property
    def alive(self) -> bool:
        """Whether the `tfleet dev` that wrote it still runs (a crashed one leaves the file)."""
        if not 0 < self.pid <= PID_MAX:
            return False  # unknown (0); kill(0 or -1, 0) would ask about a group or every process
        try:
            os.kill(self.pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        return True


class _ContextDocument(BaseModel):
    """The file's JSON, read as strictly as a value in etcd (tfleet.schema's parse): any
    bytes in the file give a context or None, never a traceback; "pid": "12" is not a pid."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    endpoints: Annotated[Address, Field(min_length=1)]
    prefix: Annotated[ShortText, Field(min_length=1)] = "/tfleet"
    pid: Annotated[int, Field(ge=0, le=PID_MAX)] = 0
    run_dir: Annotated[str, Field(max_length=4096)] = ""


def read_context(path: pathlib.Path | None = None) -> FleetContext | None:
    """The context in the file, or None when there is none or it cannot be used (never raises)."""
    path = path or context_path()
    try:
        data = parse(_ContextDocument, path.read_bytes(), str(path))
    except (OSError, SchemaError):
        return None
    context = FleetContext(endpoints=data.endpoints, prefix=data.prefix, pid=data.pid, run_dir=data.run_dir)
    return context if context.endpoints.strip() else None


def write_context(context: FleetContext, path: pathlib.Path | None = None) -> pathlib.Path:
    """Write atomically (a reader never sees half a file); returns the path written."""
    path = path or context_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile("w", dir=path.parent, prefix=".context-", delete=False) as tmp:
        json.dump(asdict(context), tmp)
    os.replace(tmp.name, path)
    return path


def remove_context(pid: int, path: pathlib.Path | None = None) -> None:
    """Remove the file if the process ``pid`` wrote it (a newer fleet's file is left alone)."""
    path = path or context_path()
    current = read_context(path)
    if current is not None and current.pid == pid:
        path.unlink(missing_ok=True)
