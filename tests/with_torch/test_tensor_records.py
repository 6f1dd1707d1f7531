"""Contract 6 with torch: how tensors are kept under each store option."""

import warnings

import numpy as np
import pytest
import torch


@pytest.fixture
def capture(gl):
    @gl("value")
    def keep(value):
        return None

    gl.activate()

    def run(value):
        keep(value)
        return gl.cache[gl.key_of(keep)][-1]

    return run


def test_default_store_is_a_detached_cpu_numpy_copy(capture):
    tensor = torch.arange(6.0, requires_grad=True).reshape(2, 3) * 2
    record = capture(tensor)
    assert isinstance(record, np.ndarray) and record.dtype == np.float32
    np.testing.assert_array_equal(record, tensor.detach().numpy())
    assert record.flags.owndata  # not a view of the tensor's memory


@pytest.mark.parametrize("dtype, kept", [(torch.bfloat16, np.float32), (torch.float16, np.float16)])
def test_fp16_stays_fp16_and_bf16_which_numpy_lacks_becomes_float32(capture, dtype, kept):
    record = capture(torch.tensor([1.5, -2.25], dtype=dtype))
    assert record.dtype == kept  # the original kept fp16: half the memory of float32
    np.testing.assert_array_equal(record, [1.5, -2.25])


def test_other_dtypes_and_layouts(capture):
    assert capture(torch.tensor([1, 2], dtype=torch.int64)).dtype == np.int64
    assert capture(torch.tensor([True])).dtype == np.bool_
    conj = capture(torch.tensor([1 + 2j]).conj())
    np.testing.assert_array_equal(conj, [1 - 2j])
    sparse = capture(torch.eye(3).to_sparse())
    np.testing.assert_array_equal(sparse, np.eye(3))
    strided = capture(torch.arange(12.0).reshape(3, 4).t()[::2])
    np.testing.assert_array_equal(strided, np.arange(12.0).reshape(3, 4).T[::2])


@pytest.mark.parametrize("layout", ["jagged", "strided"])
def test_nested_tensors_become_a_list_of_arrays(capture, layout):
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="The PyTorch API of nested tensors is in prototype")
        nested = torch.nested.nested_tensor([torch.ones(2), torch.zeros(3)], layout=getattr(torch, layout))
    record = capture(nested)
    assert [part.tolist() for part in record] == [[1.0, 1.0], [0.0, 0.0, 0.0]]
    assert all(isinstance(part, np.ndarray) for part in record)


def test_record_is_a_snapshot_of_the_value_at_return(capture):
    tensor = torch.zeros(3)
    record = capture(tensor)
    tensor += 1  # changed in place after the function returned
    np.testing.assert_array_equal(record, [0, 0, 0])


def test_a_view_does_not_keep_its_large_base_alive(capture):
    base = torch.zeros(1000, 1000)
    record = capture(base[0, :10])
    assert record.base is None and record.nbytes == 40  # owns just its 10 floats


def test_nested_containers_of_tensors(capture):
    record = capture({"maps": [torch.ones(2), (torch.zeros(1), 3)], "none": None})
    assert isinstance(record["maps"][0], np.ndarray) and isinstance(record["maps"][1][0], np.ndarray)
    assert record["maps"][1][1] == 3 and record["none"] is None


def test_tensor_store_keeps_detached_tensor_copies_on_their_device(gl, capture):
    gl.configure(store="tensor")
    source = torch.ones(2, dtype=torch.bfloat16, requires_grad=True) * 3
    record = capture(source)
    assert isinstance(record, torch.Tensor) and record.dtype == torch.bfloat16
    assert not record.requires_grad and record.grad_fn is None
    assert record.device == source.device
    assert record.data_ptr() != source.data_ptr()


def test_graph_store_keeps_the_autograd_graph(gl):
    @gl("hidden")
    def layer(x, weight):
        hidden = x * weight
        return hidden.sum()

    gl.configure(store="graph")
    gl.activate()
    weight = torch.tensor([2.0, 3.0], requires_grad=True)
    out = layer(torch.tensor([1.0, 1.0]), weight)
    [hidden] = gl.cache[gl.key_of(layer)]
    assert hidden.grad_fn is not None
    (grad,) = torch.autograd.grad(out, hidden)
    torch.testing.assert_close(grad, torch.ones(2))


def test_two_names_with_tensors_record_converted_tuples(gl):
    @gl("q", "k")
    def project(x):
        q = x * 2
        k = x + 1
        return q @ k

    gl.activate()
    project(torch.ones(3))
    [(q, k)] = gl.cache[gl.key_of(project)]
    np.testing.assert_array_equal(q, [2, 2, 2])
    np.testing.assert_array_equal(k, [2, 2, 2])


def test_conversion_failure_keeps_the_value_and_warns(gl, capture):
    from visualizer import CaptureWarning

    meta = torch.empty(2, device="meta")
    with pytest.warns(CaptureWarning, match="could not keep a value of type Tensor"):
        record = capture(meta)
    assert record is meta


def test_a_conversion_warning_does_not_silence_the_missing_variable_warning(gl):
    from visualizer import CaptureWarning

    @gl("value")
    def keep(value, assign=True):
        if not assign:
            del value
        return None

    gl.activate()
    with pytest.warns(CaptureWarning, match="could not keep"):
        keep(torch.empty(1, device="meta"))
    with pytest.warns(CaptureWarning, match="returned without a value for 'value'"):
        keep(1, assign=False)


def test_a_transformers_model_output_keeps_its_type_with_converted_fields(capture):
    from transformers.modeling_outputs import BaseModelOutput

    output = BaseModelOutput(last_hidden_state=torch.ones(1, 2), attentions=(torch.zeros(1, 1, 2, 2),))
    record = capture(output)
    assert type(record) is BaseModelOutput
    assert isinstance(record.last_hidden_state, np.ndarray) and isinstance(
        record["attentions"][0], np.ndarray
    )
    assert isinstance(output.last_hidden_state, torch.Tensor)  # the model's own output is untouched
