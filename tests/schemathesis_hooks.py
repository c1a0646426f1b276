"""schemathesis hooks for tests/openapi_fuzz.rs: image uploads (a build
context or a `docker save` archive, `application/x-tar`) are sent as the
binary strings the schema generates, like `application/octet-stream`."""
import schemathesis

schemathesis.serializer.alias("application/x-tar", "application/octet-stream")
