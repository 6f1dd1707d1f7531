"""The payload codec: square-root codes per row, exact prefix keys, deflate + base64."""

import base64
import zlib

import numpy as np
import pytest
from view_data import softmax_maps

from visualizer.view._codec import choose_bits, decode_maps, encode_maps, max_error


@pytest.mark.parametrize("bits", [6, 8])
@pytest.mark.parametrize("exact_keys", [0, 1, 5])
def test_round_trip_stays_within_the_documented_bound(bits, exact_keys):
    maps = softmax_maps((2, 3, 40, 40), seed=bits + exact_keys)
    payload, meta = encode_maps(maps, exact_keys=exact_keys, bits=bits)
    back = decode_maps(payload, meta)
    assert back.shape == maps.shape and back.dtype == np.float32
    error = np.abs(back - maps)
    assert (error <= max_error(maps, meta)).all()
    # The bound is not slack: codes really are coarse at the top of a row.
    assert error.max() > 0.1 * max_error(maps, meta).max()
    np.testing.assert_array_equal(back[..., :exact_keys], maps[..., :exact_keys])


def test_small_weights_keep_their_detail():
    # One dominant key and weights 10 to 100 times smaller: a linear 8-bit code relative to the
    # row maximum would give them codes 2 to 25 only, off by up to 25% at the small end.
    row = np.concatenate([[1.0], np.linspace(0.01, 0.1, 63)]).astype(np.float32)
    maps = (row / row.sum())[None, None, None, :]
    payload, meta = encode_maps(maps, bits=8)
    back = decode_maps(payload, meta)[0, 0, 0]
    small = maps[0, 0, 0, 1:]
    assert len(np.unique(back[1:])) > 40
    np.testing.assert_allclose(back[1:], small, rtol=0.05)


def test_exact_keys_do_not_squash_the_rest():
    # A CLS key with 99% of the weight: the patches are still coded relative to their own maximum.
    patches = softmax_maps((1, 1, 1, 64), seed=3)[0, 0, 0] * 0.01
    maps = np.concatenate([[0.99], patches]).astype(np.float32)[None, None, None, :]
    payload, meta = encode_maps(maps, exact_keys=1, bits=6)
    back = decode_maps(payload, meta)[0, 0, 0]
    assert back[0] == np.float32(0.99)
    assert np.abs(back[1:] - patches).max() <= patches.max() / 63


def test_all_zero_rows_survive():
    maps = softmax_maps((1, 2, 4, 6))
    maps[0, 1, 2] = 0  # a fully masked query
    payload, meta = encode_maps(maps)
    back = decode_maps(payload, meta)
    assert not back[0, 1, 2].any()
    assert np.isfinite(back).all()


def test_layout_is_scales_then_exact_then_codes():
    maps = softmax_maps((1, 1, 3, 4))
    payload, meta = encode_maps(maps, exact_keys=1, bits=8)
    raw = zlib.decompress(base64.b64decode(payload))
    assert len(raw) == 3 * 4 + 3 * 4 + 3 * 3
    np.testing.assert_array_equal(np.frombuffer(raw[:12], "<f4"), maps[0, 0, :, 1:].max(-1))
    np.testing.assert_array_equal(np.frombuffer(raw[12:24], "<f4"), maps[0, 0, :, 0])
    assert max(raw[24:]) == 255  # the largest coded weight of each row gets the top code


def test_bits_follow_the_size():
    assert choose_bits(6 * 12 * 20 * 20) == 8
    assert choose_bits(12 * 6 * 257 * 257) == 6
    payload, meta = encode_maps(softmax_maps((1, 1, 2, 3)))
    assert meta["bits"] == 8


def test_bad_arguments_and_corrupt_payloads_are_refused():
    maps = softmax_maps((1, 1, 2, 3))
    with pytest.raises(ValueError, match="exact_keys must be from 0 to 2"):
        encode_maps(maps, exact_keys=3)
    with pytest.raises(ValueError, match="bits must be from 2 to 8"):
        encode_maps(maps, bits=9)
    payload, meta = encode_maps(maps)
    with pytest.raises(ValueError, match="needs"):
        decode_maps(payload, dict(meta, shape=[1, 1, 3, 3]))
    with pytest.raises(ValueError, match="unknown payload format"):
        decode_maps(payload, dict(meta, encoding="linear"))
