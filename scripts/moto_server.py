#!/usr/bin/env python3
"""Starts moto's server on 127.0.0.1 for the end-to-end tests.

moto lacks WorkSpaces' DescribeWorkspacesConnectionStatus; this launcher registers that one
operation on moto's WorkSpaces response class. The state it returns is taken from each
workspace's tags (set by the test): `test:last-connected` (ISO-8601 or `never`) and
`test:connection-state`.

moto's Athena GetQueryResults answers every row in one page; Athena pages them (at most
`MaxResults`, 1000 by default, then a `NextToken`). This launcher pages the queued result the same
way, so the client's paging loop is exercised. moto's executions go QUEUED -> RUNNING -> SUCCEEDED
(moto's state manager, `athena::execution`, decides how many polls each state lasts); a query
containing the line comment `-- moto:fail <reason>` ends FAILED instead, with that reason, as
Athena reports a failed query (Status.StateChangeReason and AthenaError). Each Athena patch
raises if moto's classes changed shape, so the server does not start without it.
"""
import re
import argparse
import json

from moto.server import ThreadedMotoServer


def _install_connection_status():
    try:
        from moto.workspaces.responses import WorkSpacesResponse
        from moto.workspaces.models import workspaces_backends
    except Exception:  # moto without workspaces: nothing to add
        return

    def describe_workspaces_connection_status(self):
        params = json.loads(self.body or "{}")
        ids = params.get("WorkspaceIds") or []
        backend = workspaces_backends[self.current_account][self.region]
        out = []
        for ws_id in ids or list(backend.workspaces.keys()):
            ws = backend.workspaces.get(ws_id)
            if ws is None:
                continue
            tags = {t["Key"]: t["Value"] for t in (getattr(ws, "tags", None) or [])}
            item = {"WorkspaceId": ws_id,
                    "ConnectionState": tags.get("test:connection-state", "DISCONNECTED")}
            last = tags.get("test:last-connected")
            if last and last != "never":
                import datetime as dt
                item["LastKnownUserConnectionTimestamp"] = dt.datetime.fromisoformat(
                    last.replace("Z", "+00:00")).timestamp()
            out.append(item)
        return json.dumps({"WorkspacesConnectionStatus": out})

    WorkSpacesResponse.describe_workspaces_connection_status = describe_workspaces_connection_status


def _install_athena_paging():
    # no try: the tests rely on paging, a moto without it must not pass for one with it
    from moto.athena.responses import AthenaResponse
    whole = AthenaResponse.get_query_results

    def get_query_results(self):
        out = json.loads(whole(self))
        rows = out.get("ResultSet", {}).get("Rows", [])
        size = int(self._get_param("MaxResults") or 1000)
        start = int(self._get_param("NextToken") or 0)
        out["ResultSet"]["Rows"] = rows[start:start + size]
        if start + size < len(rows):
            out["NextToken"] = str(start + size)
        return json.dumps(out)

    AthenaResponse.get_query_results = get_query_results


FAIL_MARKER = re.compile(r"--\s*moto:fail\s+(.+)$", re.M)


def _install_athena_failure():
    from moto.athena.responses import AthenaResponse
    whole = AthenaResponse.get_query_execution

    def get_query_execution(self):
        out = json.loads(whole(self))
        q = out["QueryExecution"]
        m = FAIL_MARKER.search(q.get("Query") or "")
        if m and q["Status"]["State"] == "SUCCEEDED":
            reason = m.group(1).strip()
            q["Status"]["State"] = "FAILED"
            q["Status"]["StateChangeReason"] = reason
            q["Status"]["AthenaError"] = {"ErrorCategory": 2, "ErrorType": 1006, "Retryable": False,
                                          "ErrorMessage": reason}
        return json.dumps(out)

    AthenaResponse.get_query_execution = get_query_execution


def _install_complete_multipart_root():
    """S3 answers CompleteMultipartUpload with a `CompleteMultipartUploadResult` root element (the
    AWS SDKs for Rust and Java check it); moto 5.2's serializer names it
    `CompleteMultipartUploadResponse`. Renamed here; a no-op where moto already answers right."""
    from moto.s3.responses import S3Response

    original = S3Response._key_response_post

    def key_response_post(self, *args, **kwargs):
        status, headers, body = original(self, *args, **kwargs)
        wrong = "CompleteMultipartUploadResponse"
        if isinstance(body, (bytes, str)):
            text = body.decode() if isinstance(body, bytes) else body
            if f"<{wrong}" in text:
                text = text.replace(f"<{wrong}", "<CompleteMultipartUploadResult")
                text = text.replace(f"</{wrong}>", "</CompleteMultipartUploadResult>")
                body = text.encode() if isinstance(body, bytes) else text
                headers = dict(headers)
                headers.pop("content-length", None)
                headers.pop("Content-Length", None)
        return status, headers, body

    S3Response._key_response_post = key_response_post


def _install_model_data_guard():
    """moto's state dump (`/moto-api/data.json`, where the SES tests read the mail sent) skips an
    attribute that cannot be serialised but not one whose getter raises: once any multipart
    upload has a part, an S3 part's `status` raises NoSuchBucket and the dump answers 500. Here
    any exception skips the attribute, as moto means to."""
    import json as _json
    from moto.moto_api._internal import responses as api_responses

    def model_data(self, request, full_url, headers):
        from moto.core.model_instances import model_data as tracked

        results = {}
        for service in sorted(tracked):
            models = tracked[service]
            results[service] = {}
            for name in sorted(models):
                results[service][name] = []
                for instance in models[name].instances_tracked:
                    inst_result = {}
                    for attr in dir(instance):
                        if attr.startswith("_"):
                            continue
                        try:
                            value = getattr(instance, attr)
                            _json.dumps(value)
                        except Exception:  # a getter that raises, or a value JSON cannot hold
                            continue
                        inst_result[attr] = value
                    results[service][name].append(inst_result)
        return 200, {"Content-Type": "application/javascript"}, _json.dumps(results)

    api_responses.MotoAPIResponse.model_data = model_data
    try:  # the URL map binds the handler when it is imported
        from moto.moto_api._internal import urls as api_urls

        for path, handler in list(api_urls.url_paths.items()):
            if getattr(handler, "__name__", "") == "model_data":
                api_urls.url_paths[path] = model_data.__get__(api_urls.response_instance)
    except ImportError:
        pass


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, required=True)
    a = ap.parse_args()
    _install_connection_status()
    _install_athena_paging()
    _install_athena_failure()
    _install_complete_multipart_root()
    _install_model_data_guard()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=a.port, verbose=False)
    server.start()
    import threading
    threading.Event().wait()


if __name__ == "__main__":
    main()
