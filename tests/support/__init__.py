

def one_torch_thread():
    """Run a test with one torch thread (a generator fixture body): the families' exactness tests
    compare float results across batch shapes, which must not depend on how work is split."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
