"""A real local `tritonserver` (the nvidia-pytriton wheel's, or one on PATH): find, start, wait,
stop without orphans. `LocalTriton` and `serve_forever` are the entry points."""

from tritonkit.server.local_triton import (
    STUB_BINARY,
    LocalTriton,
    ModelControl,
    ServerOptions,
    ServerSettings,
    ServerURLs,
    find_orphans,
    find_tritonserver,
    serve_forever,
)
from tritonkit.server.ports import LOOPBACK, is_port_free, pick_free_ports
from tritonkit.server.server_environment import server_environment
from tritonkit.server.server_options import ApiRestriction, ServerPorts, server_command
from tritonkit.server.triton_install import SERVER_BINARY

__all__ = ["LOOPBACK", "SERVER_BINARY", "STUB_BINARY", "ApiRestriction", "LocalTriton",
           "ModelControl", "ServerOptions", "ServerPorts", "ServerSettings", "ServerURLs",
           "find_orphans", "find_tritonserver", "is_port_free", "pick_free_ports",
           "serve_forever", "server_command", "server_environment"]
