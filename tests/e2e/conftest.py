"""End-to-end tests run MIA as a user does: the `mia` fixture of the integration tests."""

from tests.integration.conftest import mia, run  # noqa: F401 - pytest finds fixtures by name
