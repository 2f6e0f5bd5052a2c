import torch

from latentwire.server.registry import one_thread_on_cpu


def test_small_codecs_encode_on_one_cpu_thread_and_the_setting_comes_back():
    before = torch.get_num_threads()
    with one_thread_on_cpu(torch.device("cpu")):
        assert torch.get_num_threads() == 1
    assert torch.get_num_threads() == before
    with one_thread_on_cpu(torch.device("cuda")):  # nothing to change off the CPU
        assert torch.get_num_threads() == before
