"""The token check the gateway tests pass to ``namewire gateway --auth tests/apps/web_auth.py:check``."""


def check(token, origin):
    return token == "s3cret"
