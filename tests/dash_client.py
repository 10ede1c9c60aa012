"""Post callback payloads to a Dash app's real endpoint, as a browser (or an attacker) would."""

from __future__ import annotations

import json
import time
from typing import Any

from dash import Dash


class DashClient:
    """Calls ``/_dash-update-component`` through Flask's test client."""

    def __init__(self, app: Dash) -> None:
        self.app = app
        self.client = app.server.test_client()

    def key_for(self, first_output: str) -> str:
        """The callback_map key of the callback whose first output is ``first_output`` (``id.prop``)."""
        for key in self.app.callback_map:
            if key.lstrip(".").startswith(first_output):
                return key
        raise KeyError(first_output)

    def payload(self, first_output: str, values: dict[str, Any], changed: list[str] | None = None) -> dict[str, Any]:
        """The JSON body for one call. ``values`` maps ``id.prop`` to the value sent."""
        key = self.key_for(first_output)
        spec = self.app.callback_map[key]
        outs = [{"id": o.component_id, "property": o.component_property} for o in spec["output"]] if isinstance(spec["output"], list) else {"id": spec["output"].component_id, "property": spec["output"].component_property}
        def fill(items):
            return [{**i, "value": values.get(f"{i['id']}.{i['property']}")} for i in items]
        inputs = fill(spec["inputs"])
        return {
            "output": key,
            "outputs": outs,
            "inputs": inputs,
            "state": fill(spec["state"]),
            "changedPropIds": changed if changed is not None else [f"{i['id']}.{i['property']}" for i in inputs[:1]],
        }

    def call(self, first_output: str, values: dict[str, Any], changed: list[str] | None = None, timeout_s: float = 120.0):
        """POST one call; returns the Flask response (for a background callback: the final one)."""
        body = self.payload(first_output, values, changed)
        return self.post(json.dumps(body), timeout_s)

    def post(self, data: str | bytes, timeout_s: float = 120.0, query: str = ""):
        """POST a raw body; a background job's handle is polled, as the browser does, until it ends."""
        r = self.client.post(f"/_dash-update-component{query}", data=data, content_type="application/json")
        handle = _job_handle(r)
        if handle is None:
            return r
        self.polls = 0
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            time.sleep(0.02)
            self.polls += 1
            r = self.client.post("/_dash-update-component", query_string=handle, data=data, content_type="application/json")
            if r.status_code != 200 or "response" in (r.get_json(silent=True) or {}):
                return r
        raise TimeoutError(f"background job {handle['job']} did not finish in {timeout_s} s")

    def start(self, first_output: str, values: dict[str, Any]) -> dict[str, str]:
        """Start a background callback and return its handle (``cacheKey``, ``job``) without waiting."""
        body = json.dumps(self.payload(first_output, values))
        r = self.client.post("/_dash-update-component", data=body, content_type="application/json")
        handle = _job_handle(r)
        assert handle is not None, (r.status_code, r.data[:300])
        return handle

    def outputs(self, first_output: str, values: dict[str, Any], changed: list[str] | None = None) -> dict[str, Any]:
        """Call and return ``{"id.prop": value}`` for the outputs that were updated (empty on 204)."""
        r = self.call(first_output, values, changed)
        assert r.status_code in (200, 204), (r.status_code, r.data[:500])
        if r.status_code == 204:
            return {}
        data = r.get_json()["response"]
        return {f"{cid}.{prop}": v for cid, props in data.items() for prop, v in props.items()}


def _job_handle(r) -> dict[str, str] | None:
    """The (cacheKey, job) query of a background callback's first answer, else ``None``."""
    if r.status_code != 200:
        return None
    body = r.get_json(silent=True)
    if isinstance(body, dict) and "cacheKey" in body and "job" in body:
        return {"cacheKey": body["cacheKey"], "job": body["job"]}
    return None


def decode(value: Any):
    """Plotly's typed-array JSON (``{"dtype", "bdata", "shape"}``) or a list, as a numpy array."""
    import base64

    import numpy as np

    if isinstance(value, dict) and "bdata" in value:
        arr = np.frombuffer(base64.b64decode(value["bdata"]), dtype=value["dtype"])
        shape = value.get("shape")
        return arr.reshape([int(s) for s in str(shape).split(",")]) if shape else arr
    return np.asarray(value)
