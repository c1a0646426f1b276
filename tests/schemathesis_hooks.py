"""schemathesis hooks for tests/openapi_fuzz.rs: image uploads (a build
context or a `docker save` archive, `application/x-tar`) are sent as the
binary strings the schema generates, like `application/octet-stream`."""
import schemathesis

schemathesis.serializer.alias("application/x-tar", "application/octet-stream")


@schemathesis.hook
def map_query(ctx, query):
    """A followed log stream stays open until the client goes, by design: a
    fuzzer's request would only run into its timeout. Everything else about
    the logs operation is generated as the schema says."""
    if query and ctx.operation.path.endswith("/logs") and query.get("follow") in (True, "true"):
        query["follow"] = "false"
    return query
