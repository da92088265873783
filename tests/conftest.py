import pytest
import torch


@pytest.fixture(autouse=True)
def _seed_and_threads():
    """Seed every test; tiny tensors run fastest (and steadiest on shared cores) on one thread."""
    torch.manual_seed(0)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
