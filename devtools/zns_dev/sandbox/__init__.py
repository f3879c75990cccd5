"""The sandbox Zalo: a local stand-in for Zalo's ZNS Journey API and OAuth host.

config.py   SandboxConfig (what it can be told at start-up)
state.py    the in-memory rules of each Zalo call, with an injected clock
faults.py   latency and fault dice
app.py      the aiohttp routes: Zalo's calls and the /_sandbox control API
webhooks.py signed webhook events (delivery, journey charged) after accepted sends
server.py   serve() in this process, running_sandbox() in a subprocess
control.py  SandboxControl, a typed client for /_sandbox
cli.py      `zns sandbox`
"""

from zns_dev.sandbox.config import SandboxConfig
from zns_dev.sandbox.control import SandboxControl
from zns_dev.sandbox.server import running_sandbox, serve

__all__ = ["SandboxConfig", "SandboxControl", "running_sandbox", "serve"]
