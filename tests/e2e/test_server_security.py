"""The Streamlit server as `streamlit run app.py` starts it (our .streamlit/config.toml): uploads over the cap are
refused by the server itself, and a foreign Host (DNS rebinding) cannot open the app's WebSocket.

No browser: plain HTTP and a WebSocket on 127.0.0.1, as a script on another web page would send them.
"""

from __future__ import annotations

import http.client
import socket
import tomllib

import pytest
import requests
from streamlit.proto.BackMsg_pb2 import BackMsg
from streamlit.proto.ForwardMsg_pb2 import ForwardMsg
from websockets.exceptions import InvalidStatus
from websockets.sync.client import connect

from tests.e2e.conftest import REPO, AppServer

pytestmark = pytest.mark.e2e

MAX_UPLOAD_MB = 512  # the one upload limit Streamlit 1.67 enforces on the server (server.maxUploadSize)
XSRF_COOKIE = "_streamlit_xsrf"


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    root = tmp_path_factory.mktemp("server")
    (root / "runs").mkdir()
    (root / "data").mkdir()
    app = AppServer(root / "runs", root / "data").start()
    yield app
    app.stop()


def _xsrf_token(server: AppServer) -> str:
    r = requests.get(f"{server.url}/_stcore/health", timeout=10)
    assert r.status_code == 200
    return r.cookies[XSRF_COOKIE]


def _open_stream(server: AppServer, host: str, token: str | None = None):
    """The app's WebSocket, sent with the given Host header (the socket itself always goes to 127.0.0.1)."""
    sock = socket.create_connection(("127.0.0.1", server.port), timeout=10)
    headers = {"Origin": f"http://{host}:{server.port}"}
    if token:
        headers["Cookie"] = f"{XSRF_COOKIE}={token}"
    return connect(f"ws://{host}:{server.port}/_stcore/stream", sock=sock, subprotocols=["streamlit", token] if token else ["streamlit"],
                   additional_headers=headers, open_timeout=10)  # fmt: skip


def _session_id(ws) -> str:
    """Ask for a script run, as the browser does on load, and read the session id from the new_session message."""
    msg = BackMsg()
    msg.rerun_script.query_string = ""
    ws.send(msg.SerializeToString())
    for _ in range(200):
        fwd = ForwardMsg()
        fwd.ParseFromString(ws.recv(timeout=30))
        if fwd.WhichOneof("type") == "new_session":
            return fwd.new_session.initialize.session_id
    raise AssertionError("no new_session message")


def test_config_caps_uploads_and_allows_only_local_hosts():
    server = tomllib.loads((REPO / ".streamlit" / "config.toml").read_text())["server"]
    assert server["maxUploadSize"] == MAX_UPLOAD_MB
    assert server["address"] == "127.0.0.1"
    assert set(server["allowedHosts"]) == {"localhost", "127.0.0.1", "::1"}
    assert server["enableXsrfProtection"] is True


def test_server_refuses_an_upload_over_the_cap(server):
    token = _xsrf_token(server)
    with _open_stream(server, "127.0.0.1", token) as ws:
        sid = _session_id(ws)
        auth = {"X-Xsrftoken": token, "Cookie": f"{XSRF_COOKIE}={token}"}
        small = requests.put(f"{server.url}/_stcore/upload_file/{sid}/small", files={"file": ("a.png", b"x" * 1000)},
                             headers=auth, timeout=10)  # fmt: skip
        assert small.status_code == 204  # a real upload reaches the handler: the refusal below is the size

        # A direct PUT to the widget's upload URL, as a script (not the page) would send it: over the server cap it
        # is refused from its Content-Length, before the body is read. (Under the old 1024 MB cap the server
        # waited for the whole body instead, and the read below timed out.)
        conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
        try:
            conn.putrequest("PUT", f"/_stcore/upload_file/{sid}/big")
            conn.putheader("Content-Type", "multipart/form-data; boundary=XX")
            conn.putheader("Content-Length", str((MAX_UPLOAD_MB + 1) * 2**20))
            for k, v in auth.items():
                conn.putheader(k, v)
            conn.endheaders()
            conn.send(b"--XX\r\n")
            assert conn.getresponse().status == 413
        finally:
            conn.close()

    without_token = requests.put(f"{server.url}/_stcore/upload_file/{sid}/x", files={"file": ("a.png", b"x")},
                                 timeout=10)  # fmt: skip
    assert without_token.status_code == 403


def test_websocket_refuses_a_foreign_host(server):
    with pytest.raises(InvalidStatus) as info:
        _open_stream(server, "evil.example")
    assert info.value.response.status_code == 403
    for host in ("127.0.0.1", "localhost"):
        with _open_stream(server, host) as ws:  # the names a person types still work
            assert ws.request.headers["Host"] == f"{host}:{server.port}"
