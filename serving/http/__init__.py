"""``ast-serve http``: the identification service (Starlette + uvicorn), the same answers as ``identify``.

Modules: :mod:`.options` (the server's knobs), :mod:`.limits` (auth, query, body and upload checks, typed HTTP
errors), :mod:`.decode` (an upload in memory -> one mono song at the model's rate), :mod:`.batcher` (windows of
concurrent requests merged into one ONNX Runtime run), :mod:`.metrics` (Prometheus), :mod:`.app` (the
endpoints), :mod:`.server` (uvicorn, signals, exit codes) and ``page.html`` (the upload page at ``/``).

The HTTP stack is the ``[http]`` extra: nothing here is imported by ``ast-serve identify``.
"""

from serving.http.options import HttpOptions

__all__ = ["HttpOptions"]
