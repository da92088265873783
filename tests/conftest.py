import pytest
import torch


@pytest.fixture(autouse=True, scope="session")
def _one_thread():
    """Tiny tensors run fastest (and steadiest on shared cores) on one thread, and `make test`
    runs a pytest-xdist worker per core: a second thread would only spin against the other
    worker. Session-wide, so that module fixtures (a net trained once per module) run so too."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(autouse=True)
def _seed_and_threads():
    """Seed every test, and undo a test's own thread count."""
    torch.manual_seed(0)
    yield
    torch.set_num_threads(1)
