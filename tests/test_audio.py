import numpy as np
import pytest
import soundfile as sf
from helpers import tone, write_wav

from asr.core.errors import AudioError
from asr.data.audio import load_audio, read_info, resample, save_audio


def test_stereo_24bit_and_8k_mono_follow_the_same_rules(tmp_path):
    stereo = write_wav(tmp_path / "s.wav", tone(1.0, 44_100, channels=2), 44_100, "PCM_24")
    mono = write_wav(tmp_path / "m.wav", tone(1.0, 8_000), 8_000)
    a = load_audio(stereo, 16_000)
    b = load_audio(mono, 16_000)
    for x in (a, b):
        assert x.dtype == np.float32 and x.ndim == 1
        assert x.shape == (16_000,)
        assert np.abs(x).max() <= 1.0
    # the stereo mixdown is the channel mean; check it before resampling
    raw, _ = sf.read(str(stereo), dtype="float32")
    np.testing.assert_allclose(load_audio(stereo), raw.mean(axis=1), atol=1e-6)


def test_resampled_tone_keeps_its_frequency(tmp_path):
    path = write_wav(tmp_path / "t.wav", tone(1.0, 44_100, freq=1000.0), 44_100, "PCM_24")
    x = load_audio(path, 8_000)
    peak_hz = np.argmax(np.abs(np.fft.rfft(x))) * 8_000 / len(x)
    assert abs(peak_hz - 1000.0) <= 1.0


@pytest.mark.parametrize("fmt,subtype", [("FLAC", "PCM_16"), ("OGG", "VORBIS"), ("NIST", "PCM_16"), ("WAV", "FLOAT")])
def test_formats(tmp_path, fmt, subtype):
    path = tmp_path / f"a.{fmt.lower()}"
    sf.write(str(path), tone(0.5, 16_000), 16_000, format=fmt, subtype=subtype)
    x = load_audio(path, 16_000)
    assert x.shape == (8_000,) and x.dtype == np.float32


def test_offset_and_duration(tmp_path):
    data = np.linspace(-0.5, 0.5, 8_000, dtype=np.float32)
    path = write_wav(tmp_path / "r.wav", data, 8_000, "FLOAT")
    seg = load_audio(path, offset=0.25, duration=0.5)
    np.testing.assert_array_equal(seg, data[2_000:6_000])
    with pytest.raises(AudioError, match="past the end"):
        load_audio(path, offset=2.0, duration=0.5)


def test_save_and_info_round_trip(tmp_path):
    x = tone(0.3, 8_000)
    save_audio(tmp_path / "x.wav", x, 8_000)
    info = read_info(tmp_path / "x.wav")
    assert (info.sample_rate, info.frames, info.channels) == (8_000, 2_400, 1)
    np.testing.assert_allclose(load_audio(tmp_path / "x.wav"), x, atol=1 / 32768)


def test_resample_identity():
    x = tone(0.1, 8_000)
    assert resample(x, 8_000, 8_000) is x


# --- every bad input raises AudioError naming the file -----------------------------------


def _expect(path, match, **kw):
    with pytest.raises(AudioError, match=match) as e:
        load_audio(path, **kw)
    assert str(path) in str(e.value)


def test_missing_file(tmp_path):
    _expect(tmp_path / "nope.wav", "no such file")


def test_not_audio(tmp_path):
    p = tmp_path / "notes.wav"
    p.write_text("this is not audio\n" * 10)
    _expect(p, "not a readable audio file")


def test_truncated(tmp_path):
    p = write_wav(tmp_path / "t.wav", tone(1.0, 8_000), 8_000)
    b = p.read_bytes()
    cut = tmp_path / "cut.wav"
    cut.write_bytes(b[: len(b) // 2])
    _expect(cut, "truncated")
    header_only = tmp_path / "hdr.wav"
    header_only.write_bytes(b[:30])
    _expect(header_only, "not a readable audio file")


def test_zero_samples(tmp_path):
    p = write_wav(tmp_path / "empty.wav", np.zeros(0, np.float32), 8_000)
    _expect(p, "zero samples")


def test_nan_and_inf(tmp_path):
    for bad in (np.nan, np.inf):
        x = tone(0.1, 8_000)
        x[100] = bad
        p = write_wav(tmp_path / f"bad{bad}.wav", x, 8_000, "FLOAT")
        _expect(p, "NaN or infinite")


def test_unsupported_rates(tmp_path):
    p = write_wav(tmp_path / "slow.wav", tone(1.0, 500, freq=50), 500)
    _expect(p, "sample rate 500 Hz is not supported")
    ok = write_wav(tmp_path / "ok.wav", tone(0.1, 8_000), 8_000)
    _expect(ok, "requested sample rate 10 Hz", sample_rate=10)


def test_stream_audio_chunks_concatenate_to_the_whole(tmp_path):
    from asr.data.audio import stream_audio

    x = tone(3.3, 8_000, channels=2)
    p = write_wav(tmp_path / "long.wav", x, 8_000, "FLOAT")
    chunks = list(stream_audio(p, 8_000, chunk_seconds=1.0))
    assert [len(c) for c in chunks] == [8_000, 8_000, 8_000, 2_400]
    np.testing.assert_array_equal(np.concatenate(chunks), load_audio(p))
    resampled = list(stream_audio(p, 16_000, chunk_seconds=1.0))
    assert abs(sum(len(c) for c in resampled) - 52_800) <= 4
    with pytest.raises(AudioError, match="no such file"):
        list(stream_audio(tmp_path / "gone.wav", 8_000, 1.0))
