#!/usr/bin/python3
"""Generate a synthetic spoken-digit data set for dashnas: the English words
"zero" .. "nine" rendered by espeak-ng over many voices, speeds and pitches.

The audio is SYNTHETIC SPEECH produced by the espeak-ng formant synthesiser,
not recordings of people.

Voices. A voice is an English accent (espeak-ng language: en-gb, en-us,
en-gb-scotland, en-gb-x-gbclan, en-gb-x-rp, en-gb-x-gbcwmd, en-029, en-us-nyc)
combined with a voice variant ("speaker": m1..m8, f1..f5, klatt..klatt6, croak,
and the named variants shipped with espeak-ng; novelty variants such as
whisper, echo-heavy or robot ones are left out), passed as -v ACCENT+VARIANT.
Each clip draws an accent, a variant of its split, a speed (-s, words per
minute) and a pitch (-p, 0..99) uniformly at random.

Split. The variants are shuffled with the seed and 20% of them (--test-variants)
are used only for the test set, the rest only for the training set; the accents
are shared. Test voices (accent+variant) are therefore never heard in training,
so every test (voice, speed, pitch) combination is disjoint from train: the
test measures generalisation to unseen speakers.

Processing of a clip: espeak-ng writes a 22050 Hz 16-bit mono WAV (read with
the `wave` module) -> resampled to --rate Hz with scipy.signal.resample_poly ->
silence trimmed (10 ms frames below -40 dB of the loudest frame at both ends)
-> centred in --length samples (zero padding; longer words are cropped around
their centre, counted in meta.json) -> random gain (peak level uniform in
[-30, -1] dBFS) -> white Gaussian noise over the whole clip at a random SNR
uniform in [5, 30] dB relative to the mean power of the trimmed speech ->
16-bit PCM quantisation with clipping (like a recorded file) -> normalised
per clip to unit RMS over all --length samples (--normalise rms, the default;
with --normalise none the PCM-scaled values in [-1, 1] are kept). Note that
with per-clip RMS normalisation the random gain only acts through the 16-bit
quantisation and clipping, i.e. almost not at all.

Outputs in --out: {train,test}_x.npy float32 [n, 1, L], {train,test}_y.npy
int64 [n] (the digit), {train,test}_clips.csv (per-clip voice, speed, pitch,
gain, SNR), meta.json (parameters, statistics, dashnas task spec) and
task.json (the task spec alone). Classes are balanced exactly when n is a
multiple of 10. Rendered WAVs are cached in --cache (default: a folder in the
system temp dir) and espeak-ng runs --jobs processes in parallel.

Reproducible: the same seed and the same espeak-ng build give identical files.
"""

import argparse
import concurrent.futures
import csv
import json
import os
import subprocess
import sys
import tempfile
import time
import wave
from fractions import Fraction

import numpy as np
import scipy
from scipy.signal import resample_poly

WORDS = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]

ACCENTS = ["en-gb", "en-us", "en-gb-scotland", "en-gb-x-gbclan", "en-gb-x-rp",
           "en-gb-x-gbcwmd", "en-029", "en-us-nyc"]

# espeak-ng voice variants (file names under espeak-ng-data/voices/!v). Left out:
# Demonic, announcer, "Mr serious" (space in the name), fast, Tweaky, UniRobot,
# anikaRobot, whisper, whisperf, RicishayMax{,2,3} (strong echo).
VARIANTS = [
    "m1", "m2", "m3", "m4", "m5", "m6", "m7", "m8",
    "f1", "f2", "f3", "f4", "f5",
    "klatt", "klatt2", "klatt3", "klatt4", "klatt5", "klatt6",
    "croak", "grandma", "grandpa",
    "Alex", "Alicia", "Andrea", "Andy", "Annie", "AnxiousAndy", "Denis", "Diogo",
    "Gene", "Gene2", "Henrique", "Hugo", "Jacky", "Lee", "Marco", "Mario",
    "Michael", "Mike", "Nguyen", "Storm", "adam", "anika", "antonio", "aunty",
    "belinda", "benjamin", "boris", "caleb", "david", "ed", "edward", "edward2",
    "gustave", "iven", "iven2", "iven3", "iven4", "john", "kaukovalta", "linda",
    "marcelo", "max", "michel", "miguel", "norbert", "pablo", "paul", "pedro",
    "quincy", "rob", "robert", "robosoft", "robosoft2", "robosoft3", "robosoft4",
    "robosoft5", "robosoft6", "robosoft7", "robosoft8", "sandro", "shelby",
    "steph", "steph2", "steph3", "travis", "victor", "zac",
]

SPEED_RANGE = (120, 220)     # words per minute, inclusive (espeak-ng default 175)
PITCH_RANGE = (20, 80)       # 0..99, inclusive (default 50)
PEAK_DBFS_RANGE = (-30.0, -1.0)
SNR_DB_RANGE = (5.0, 30.0)
TRIM_DB = -40.0
FRAME_S = 0.010
SPLIT_IDS = {"train": 0, "test": 1}


# --------------------------------------------------------------------------
# espeak-ng
# --------------------------------------------------------------------------

def espeak_version():
    out = subprocess.run(["espeak-ng", "--version"], capture_output=True, text=True, check=True).stdout
    return out.strip()


def available_voices():
    """(languages, variants) known to this espeak-ng. espeak-ng silently falls
    back to its default for an unknown -v name, so the lists are checked here."""
    langs, variants = set(), set()
    out = subprocess.run(["espeak-ng", "--voices"], capture_output=True, text=True, check=True).stdout
    for line in out.splitlines()[1:]:
        parts = line.split()
        if len(parts) >= 2:
            langs.add(parts[1])
    out = subprocess.run(["espeak-ng", "--voices=variant"], capture_output=True, text=True,
                         check=True).stdout
    for line in out.splitlines()[1:]:
        i = line.find("!v/")
        if i >= 0:
            variants.add(line[i + 3:].split("  ")[0].strip())
    return langs, variants


def render(job):
    """Render one (accent, variant, speed, pitch, digit) to path unless cached."""
    key, path = job
    if os.path.exists(path):
        return path
    accent, variant, speed, pitch, digit = key
    tmp = f"{path}.{os.getpid()}.{id(job)}.tmp"
    subprocess.run(["espeak-ng", "-w", tmp, "-v", f"{accent}+{variant}", "-s", str(speed),
                    "-p", str(pitch), WORDS[digit]], check=True, capture_output=True)
    os.replace(tmp, path)
    return path


def wav_path(cache, key):
    accent, variant, speed, pitch, digit = key
    return os.path.join(cache, f"{accent}+{variant}_s{speed}_p{pitch}_{WORDS[digit]}.wav")


def read_wav(path):
    with wave.open(path, "rb") as w:
        ch, width, sr, n = w.getnchannels(), w.getsampwidth(), w.getframerate(), w.getnframes()
        raw = w.readframes(n)
    if width != 2:
        raise RuntimeError(f"{path}: expected 16-bit PCM, got {8 * width}-bit")
    x = np.frombuffer(raw, dtype="<i2").astype(np.float64) / 32768.0
    if ch > 1:
        x = x.reshape(-1, ch).mean(axis=1)
    return x, sr


# --------------------------------------------------------------------------
# Signal processing
# --------------------------------------------------------------------------

def resample(x, sr, rate):
    if sr == rate:
        return x
    fr = Fraction(rate, sr)
    return resample_poly(x, fr.numerator, fr.denominator)


def trim(x, rate):
    """Cut leading/trailing frames quieter than TRIM_DB relative to the loudest."""
    frame = max(1, int(round(FRAME_S * rate)))
    nf = int(np.ceil(len(x) / frame))
    padded = np.zeros(nf * frame)
    padded[:len(x)] = x
    rms = np.sqrt(np.mean(padded.reshape(nf, frame) ** 2, axis=1))
    if rms.max() <= 0.0:
        raise RuntimeError("silent rendering")
    active = np.nonzero(rms >= rms.max() * 10.0 ** (TRIM_DB / 20.0))[0]
    return x[active[0] * frame:min(len(x), (active[-1] + 1) * frame)]


def place(x, length):
    """Centre x in a zero frame of `length` samples, cropping around its centre.
    Returns (frame, start, stop, cropped) with [start, stop) the speech part."""
    out = np.zeros(length)
    if len(x) > length:
        s = (len(x) - length) // 2
        out[:] = x[s:s + length]
        return out, 0, length, True
    s = (length - len(x)) // 2
    out[s:s + len(x)] = x
    return out, s, s + len(x), False


def make_clip(speech, params, rng, length, normalise):
    frame, a, b, cropped = place(speech, length)
    frame *= 10.0 ** (params["peak_dbfs"] / 20.0) / np.abs(frame).max()
    p_speech = np.mean(frame[a:b] ** 2)
    sigma = np.sqrt(p_speech / 10.0 ** (params["snr_db"] / 10.0))
    frame += sigma * rng.standard_normal(length)
    pcm = np.clip(np.round(frame * 32768.0), -32768, 32767)
    clipped = int(np.sum(np.abs(pcm) >= 32767))
    frame = pcm / 32768.0
    if normalise == "rms":
        frame /= np.sqrt(np.mean(frame ** 2))
    return frame.astype(np.float32), cropped, clipped, b - a


# --------------------------------------------------------------------------
# Data set
# --------------------------------------------------------------------------

def log_spectrogram(x, rate, bands=32):
    """[n, 1, length] waveforms -> [n, bands, frames] log band energies: Hann
    windows of 32 ms every 10 ms, power spectrum without DC, adjacent bins
    summed into `bands` equal-width bands, log(1e-6 + energy)."""
    win = int(round(0.032 * rate))
    hop = int(round(0.010 * rate))
    frames = 1 + (x.shape[-1] - win) // hop
    idx = np.arange(win)[None, :] + hop * np.arange(frames)[:, None]
    seg = x[:, 0, :][:, idx] * np.hanning(win)[None, None, :]
    power = np.abs(np.fft.rfft(seg, axis=-1))[:, :, 1:] ** 2
    usable = (power.shape[-1] // bands) * bands
    energy = power[:, :, :usable].reshape(power.shape[0], frames, bands, -1).sum(-1)
    return np.log(1e-6 + energy).transpose(0, 2, 1).astype(np.float32)


def plan_split(name, count, variants, seed):
    sid = SPLIT_IDS[name]
    labels = np.arange(count) % 10
    labels = np.random.default_rng([seed, sid, 1, 0]).permutation(labels)
    clips = []
    for i in range(count):
        rng = np.random.default_rng([seed, sid, 0, i])
        accent = ACCENTS[rng.integers(len(ACCENTS))]
        variant = variants[rng.integers(len(variants))]
        speed = int(rng.integers(SPEED_RANGE[0], SPEED_RANGE[1] + 1))
        pitch = int(rng.integers(PITCH_RANGE[0], PITCH_RANGE[1] + 1))
        peak = float(rng.uniform(*PEAK_DBFS_RANGE))
        snr = float(rng.uniform(*SNR_DB_RANGE))
        clips.append({"digit": int(labels[i]), "accent": accent, "variant": variant,
                      "speed": speed, "pitch": pitch, "peak_dbfs": peak, "snr_db": snr,
                      "rng": rng})
    return clips


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", default="data/spoken_digits", help="output directory (default data/spoken_digits)")
    p.add_argument("--train", type=int, default=3000, help="training clips (default 3000)")
    p.add_argument("--test", type=int, default=600, help="test clips (default 600)")
    p.add_argument("--rate", type=int, default=4000, help="sample rate in Hz (default 4000)")
    p.add_argument("--length", type=int, default=None,
                   help="samples per clip (default: --rate, i.e. one second)")
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    p.add_argument("--features", choices=("waveform", "spectrogram"), default="waveform",
                   help="waveform: x [n, 1, length]; spectrogram: x [n, 32, frames] log band "
                        "energies (32 ms windows every 10 ms), a 1D sequence of spectra that a "
                        "CPU can train on in minutes (default waveform)")
    p.add_argument("--test-variants", type=float, default=0.2,
                   help="fraction of voice variants held out for the test set (default 0.2)")
    p.add_argument("--normalise", choices=("rms", "none"), default="rms",
                   help="per-clip normalisation (default rms: unit RMS per clip)")
    p.add_argument("--jobs", type=int, default=max(2, os.cpu_count() or 2),
                   help="parallel espeak-ng processes (default: CPU count, at least 2)")
    p.add_argument("--cache", default=None,
                   help="folder for rendered WAVs (default: <tmp>/dashnas-spoken-digits-cache)")
    args = p.parse_args(argv)
    length = args.rate if args.length is None else args.length
    if args.rate < 1000 or length < 1 or args.train < 0 or args.test < 0 or args.seed < 0 \
            or not 0.0 < args.test_variants < 1.0 or args.jobs < 1:
        p.error("need --rate >= 1000, --length >= 1, non-negative --train/--test/--seed, "
                "0 < --test-variants < 1, --jobs >= 1")

    t0 = time.time()
    version = espeak_version()
    langs, have = available_voices()
    missing_acc = [a for a in ACCENTS if a not in langs]
    if missing_acc:
        sys.exit(f"espeak-ng lacks the accents {missing_acc}; install Debian's espeak-ng-data")
    variants = [v for v in VARIANTS if v in have]
    missing_var = [v for v in VARIANTS if v not in have]
    if missing_var:
        print(f"warning: espeak-ng lacks the variants {missing_var}; leaving them out "
              "(the data set then differs from the reference build)", file=sys.stderr)
    if len(variants) < 10:
        sys.exit(f"only {len(variants)} voice variants found; need at least 10")

    perm = np.random.default_rng([args.seed, 2, 0, 0]).permutation(len(variants))
    n_test_var = max(1, int(round(args.test_variants * len(variants))))
    test_variants = sorted(variants[i] for i in perm[:n_test_var])
    train_variants = sorted(variants[i] for i in perm[n_test_var:])

    cache = args.cache or os.path.join(tempfile.gettempdir(), "dashnas-spoken-digits-cache")
    cache = os.path.join(cache, "espeak-ng-" + version.split()[3] if len(version.split()) > 3 else "espeak-ng")
    os.makedirs(cache, exist_ok=True)
    os.makedirs(args.out, exist_ok=True)

    plans = {"train": plan_split("train", args.train, train_variants, args.seed),
             "test": plan_split("test", args.test, test_variants, args.seed)}
    keys = sorted({(c["accent"], c["variant"], c["speed"], c["pitch"], c["digit"])
                   for clips in plans.values() for c in clips})
    jobs = [(k, wav_path(cache, k)) for k in keys]
    cached = sum(os.path.exists(pth) for _, pth in jobs)
    tr = time.time()
    with concurrent.futures.ThreadPoolExecutor(max_workers=args.jobs) as ex:
        list(ex.map(render, jobs))
    print(f"rendered {len(jobs) - cached} WAVs ({cached} cached) with {args.jobs} espeak-ng "
          f"processes in {time.time() - tr:.1f}s; cache {cache}", flush=True)

    if args.features == "spectrogram":
        probe = log_spectrogram(np.zeros((1, 1, length), dtype=np.float32), args.rate)
        task = {"kind": "classification", "input_shape": list(probe.shape[1:]), "num_classes": 10}
    else:
        task = {"kind": "classification", "input_shape": [1, length], "num_classes": 10}
    meta = {
        "generator": "scripts/data/spoken_digits.py",
        "note": "Synthetic speech: the English digit words rendered by the espeak-ng formant "
                "synthesiser, not recordings of people.",
        "espeak_ng": version,
        "numpy": np.__version__,
        "scipy": scipy.__version__,
        "seed": args.seed,
        "rate_hz": args.rate,
        "features": args.features,
        "length": length,
        "words": WORDS,
        "accents": ACCENTS,
        "speed_wpm_range": list(SPEED_RANGE),
        "pitch_range": list(PITCH_RANGE),
        "peak_dbfs_range": list(PEAK_DBFS_RANGE),
        "snr_db_range": list(SNR_DB_RANGE),
        "trim": f"10 ms frames below {TRIM_DB} dB of the loudest frame cut at both ends",
        "placement": "centred, zero padded; longer words cropped around their centre",
        "noise": "white Gaussian over the whole clip, SNR relative to the mean power of the trimmed speech",
        "quantisation": "16-bit PCM with clipping before normalisation",
        "normalisation": "unit RMS per clip over all samples" if args.normalise == "rms" else "none (PCM scale)",
        "split": "voice variants partitioned with the seed: test variants never occur in train; "
                 "accents shared",
        "train_variants": train_variants,
        "test_variants": test_variants,
        "missing_variants": missing_var,
        "task": task,
        "splits": {},
    }

    for name, clips in plans.items():
        ts = time.time()
        n = len(clips)
        x = np.empty((n, 1, length), dtype=np.float32)
        y = np.empty(n, dtype=np.int64)
        cropped = clipped = 0
        durations = []
        speech_cache = {}
        for i, c in enumerate(clips):
            key = (c["accent"], c["variant"], c["speed"], c["pitch"], c["digit"])
            if key not in speech_cache:
                raw, sr = read_wav(wav_path(cache, key))
                speech_cache[key] = trim(resample(raw, sr, args.rate), args.rate)
            clip, was_cropped, n_clipped, dur = make_clip(speech_cache[key], c, c["rng"], length,
                                                          args.normalise)
            x[i, 0] = clip
            y[i] = c["digit"]
            cropped += was_cropped
            clipped += n_clipped > 0
            durations.append(len(speech_cache[key]) / args.rate)
        if args.features == "spectrogram":
            x = log_spectrogram(x, args.rate)
        np.save(os.path.join(args.out, f"{name}_x.npy"), x)
        np.save(os.path.join(args.out, f"{name}_y.npy"), y)
        with open(os.path.join(args.out, f"{name}_clips.csv"), "w", newline="") as fh:
            w = csv.writer(fh)
            w.writerow(["index", "digit", "word", "voice", "speed_wpm", "pitch", "peak_dbfs", "snr_db"])
            for i, c in enumerate(clips):
                w.writerow([i, c["digit"], WORDS[c["digit"]], f"{c['accent']}+{c['variant']}",
                            c["speed"], c["pitch"], f"{c['peak_dbfs']:.2f}", f"{c['snr_db']:.2f}"])
        d = np.array(durations) if durations else np.zeros(1)
        meta["splits"][name] = {
            "n": n,
            "x_shape": list(x.shape), "x_dtype": "float32",
            "y_shape": list(y.shape), "y_dtype": "int64",
            "class_counts": np.bincount(y, minlength=10).tolist(),
            "voices": len({(c["accent"], c["variant"]) for c in clips}),
            "speech_seconds_min": float(d.min()), "speech_seconds_mean": float(d.mean()),
            "speech_seconds_max": float(d.max()),
            "cropped_clips": int(cropped), "clips_with_pcm_clipping": int(clipped),
            "x_min": float(x.min()) if n else 0.0, "x_max": float(x.max()) if n else 0.0,
        }
        print(f"{name}: x {x.shape} float32, y {y.shape} int64, classes "
              f"{meta['splits'][name]['class_counts']}, cropped {cropped}, in {time.time() - ts:.1f}s",
              flush=True)

    meta["seconds"] = round(time.time() - t0, 2)
    with open(os.path.join(args.out, "meta.json"), "w") as fh:
        json.dump(meta, fh, indent=2)
        fh.write("\n")
    with open(os.path.join(args.out, "task.json"), "w") as fh:
        json.dump(task, fh, indent=2)
        fh.write("\n")
    print(f"wrote {args.out} in {meta['seconds']}s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
