"""Operating the worker and the ingress (layer 4): metrics, liveness and readiness, watchers,
tracing, structured logs, terminal escaping, and the HTTP server the endpoints are served with.

Imports layers 0 to 3 but never the engine: it reads a worker through `view.WorkerView`, and
the command line hands the worker the observers built here (`observers.Observers`)."""
