#!/usr/bin/python3
"""Generate a small 2D Darcy-flow data set (the FNO / NAS-Bench-360 "Darcy flow"
task at low resolution) for dashnas.

Each sample:

  * psi ~ GRF(0, (-Laplacian + 9 I)^(-2)) on the unit square with Neumann
    boundary conditions, sampled by its Karhunen-Loeve (cosine) series
        psi(x, y) = sum_{k != (0,0)} (pi^2 |k|^2 + 9)^(-1) n_k xi_k
                                     cos(pi k1 x) cos(pi k2 y),
    xi_k iid N(0, 1), n_k the L2 normalisation (1 for k_i = 0, sqrt(2) else),
    k1, k2 = 0 .. N-1 on an N x N node grid. The constant mode is dropped, so
    psi has zero mean in distribution and exactly zero spatial mean.
  * a = 12 where psi >= 0, a = 3 elsewhere (piecewise-constant permeability).
  * u solves -div(a grad u) = 1 in (0,1)^2, u = 0 on the boundary, with a
    5-point finite-volume scheme on the node grid: the flux through the face
    between two neighbouring nodes uses the HARMONIC mean of a at the two
    nodes, 2 a_P a_Q / (a_P + a_Q) (the value that makes the flux continuous
    across a jump in a). The linear system is solved with SuperLU
    (scipy.sparse.linalg.splu; one factorisation per sample).

The PDE is solved on a fine grid of factor*(R-1)+1 points per side (default
factor 2 -> 85 x 85 for R = 43) and both a and u are subsampled to every
factor-th node, so the R x R output grid holds the boundary nodes and a is
exactly the thresholded field at the output nodes.

Outputs (numpy.save, float32, C order) in --out:
  train_x.npy, test_x.npy  [n, 1, R, R]  the coefficient a (values 3 and 12)
  train_y.npy, test_y.npy  [n, 1, R, R]  the solution u
  meta.json                generator parameters, statistics and the task spec
  task.json                the dashnas task spec alone

Every sample i of split s is drawn from its own generator seeded with
(seed, s, i), so the same seed gives identical files and the test set does not
depend on --train.

--check runs self-tests of the solver (residual, manufactured solutions with
grid refinement) and prints the numbers instead of generating data.
"""

import argparse
import json
import os
import sys
import time

import numpy as np
import scipy
import scipy.sparse as sp
import scipy.sparse.linalg as spla

TAU2 = 9.0        # (-Laplacian + tau^2 I)^(-alpha) with tau = 3
ALPHA = 2.0
A_POS, A_NEG = 12.0, 3.0
SPLIT_IDS = {"train": 0, "test": 1}


# --------------------------------------------------------------------------
# Gaussian random field and coefficient
# --------------------------------------------------------------------------

class GRF:
    """Sampler of the zero-mean Neumann GRF with covariance (-Lap + 9)^(-2) on an
    n x n node grid x_i = i / (n - 1)."""

    def __init__(self, n, modes=None):
        modes = n if modes is None else modes
        k = np.arange(modes)
        x = np.linspace(0.0, 1.0, n)
        norm = np.where(k == 0, 1.0, np.sqrt(2.0))
        self.basis = np.cos(np.pi * np.outer(x, k)) * norm[None, :]  # [n points, n modes]
        k1, k2 = np.meshgrid(k, k, indexing="ij")
        lam = np.pi ** 2 * (k1 ** 2 + k2 ** 2)
        # square root of the covariance eigenvalues (lam + tau^2)^(-alpha)
        sqrt_eig = (lam + TAU2) ** (-ALPHA / 2.0)
        sqrt_eig[0, 0] = 0.0  # drop the constant mode
        self.sqrt_eig = sqrt_eig
        self.modes = modes

    def sample(self, rng):
        return self.evaluate(rng.standard_normal((self.modes, self.modes)))

    def evaluate(self, xi):
        return self.basis @ (self.sqrt_eig * xi) @ self.basis.T


def threshold(psi):
    return np.where(psi >= 0.0, A_POS, A_NEG)


# --------------------------------------------------------------------------
# Finite-volume solver for -div(a grad u) = f, u = 0 on the boundary
# --------------------------------------------------------------------------

def face_mean(p, q, kind):
    if kind == "harmonic":
        return 2.0 * p * q / (p + q)
    return 0.5 * (p + q)


def assemble(a, mean="harmonic"):
    """Matrix of the 5-point scheme on the interior nodes of an n x n node grid
    with spacing h = 1/(n-1): for interior node P with neighbours Q,
        sum_Q a_PQ (u_P - u_Q) / h^2 = f_P,   u_Q = 0 on the boundary.
    Returns a CSC matrix of size m^2 x m^2, m = n - 2 (row-major interior order)."""
    n = a.shape[0]
    m = n - 2
    h2 = (1.0 / (n - 1)) ** 2
    # face coefficients between node (i, j) and (i+1, j) / (i, j+1), all nodes
    ax = face_mean(a[:-1, :], a[1:, :], mean)   # [n-1, n]  faces along axis 0
    ay = face_mean(a[:, :-1], a[:, 1:], mean)   # [n, n-1]  faces along axis 1
    # for interior node (i, j) (1..n-2): faces to i-1, i+1, j-1, j+1
    w_n = ax[0:m, 1:m + 1]        # between (i-1, j) and (i, j)
    w_s = ax[1:m + 1, 1:m + 1]    # between (i, j) and (i+1, j)
    w_w = ay[1:m + 1, 0:m]        # between (i, j-1) and (i, j)
    w_e = ay[1:m + 1, 1:m + 1]    # between (i, j) and (i, j+1)
    diag = (w_n + w_s + w_w + w_e) / h2
    idx = np.arange(m * m).reshape(m, m)
    rows = [idx.ravel()]
    cols = [idx.ravel()]
    vals = [diag.ravel()]
    # off-diagonals only where the neighbour is interior (boundary u = 0)
    for w, di, dj in ((w_n, -1, 0), (w_s, 1, 0), (w_w, 0, -1), (w_e, 0, 1)):
        i0, i1 = max(0, -di), m - max(0, di)
        j0, j1 = max(0, -dj), m - max(0, dj)
        rows.append(idx[i0:i1, j0:j1].ravel())
        cols.append(idx[i0 + di:i1 + di, j0 + dj:j1 + dj].ravel())
        vals.append(-w[i0:i1, j0:j1].ravel() / h2)
    A = sp.csc_matrix((np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))),
                      shape=(m * m, m * m))
    return A


def solve(a, f, mean="harmonic"):
    """Solve on the node grid of a (n x n); f is the source at the nodes (n x n).
    Returns u (n x n) with zero boundary."""
    n = a.shape[0]
    A = assemble(a, mean)
    lu = spla.splu(A)
    u = np.zeros((n, n))
    u[1:-1, 1:-1] = lu.solve(np.ascontiguousarray(f[1:-1, 1:-1]).ravel()).reshape(n - 2, n - 2)
    return u


def stencil_residual(a, u, f, mean="harmonic"):
    """Residual of the scheme evaluated directly from the stencil with array
    slicing (independent of the sparse assembly): -div_h(a grad_h u) - f on the
    interior nodes."""
    n = a.shape[0]
    h = 1.0 / (n - 1)
    c = slice(1, n - 1)
    flux = np.zeros((n - 2, n - 2))
    for (si, sj) in (((slice(0, n - 2)), c), ((slice(2, n)), c), (c, slice(0, n - 2)), (c, slice(2, n))):
        flux += face_mean(a[c, c], a[si, sj], mean) * (u[c, c] - u[si, sj])
    return flux / h ** 2 - f[c, c]


# --------------------------------------------------------------------------
# Self-check
# --------------------------------------------------------------------------

def manufactured(n, coeff):
    x = np.linspace(0.0, 1.0, n)
    X, Y = np.meshgrid(x, x, indexing="ij")
    s = np.sin(np.pi * X) * np.sin(np.pi * Y)
    ux = np.pi * np.cos(np.pi * X) * np.sin(np.pi * Y)
    uy = np.pi * np.sin(np.pi * X) * np.cos(np.pi * Y)
    if coeff == "one":
        a = np.ones((n, n))
        f = 2.0 * np.pi ** 2 * s
    else:  # smooth variable coefficient a = 1 + x + y^2
        a = 1.0 + X + Y ** 2
        ax, ay = np.ones_like(X), 2.0 * Y
        # -div(a grad u) = -(a_x u_x + a_y u_y) + a * 2 pi^2 u
        f = -(ax * ux + ay * uy) + a * 2.0 * np.pi ** 2 * s
    return a, f, s


def run_check(args):
    ok = True
    n_fine = args.factor * (args.resolution - 1) + 1
    print(f"[check] scipy {scipy.__version__}, numpy {np.__version__}, face mean = {args.mean}")

    # 1. residual of the solver on one data sample (binary coefficient)
    grf = GRF(n_fine)
    rng = np.random.default_rng([args.seed, SPLIT_IDS["train"], 0])
    a = threshold(grf.sample(rng))
    f = np.ones_like(a)
    u = solve(a, f, args.mean)
    A = assemble(a, args.mean)
    r_sparse = A @ u[1:-1, 1:-1].ravel() - f[1:-1, 1:-1].ravel()
    r_stencil = stencil_residual(a, u, f, args.mean)
    rel_sparse = np.linalg.norm(r_sparse) / np.linalg.norm(f[1:-1, 1:-1])
    rel_stencil = np.linalg.norm(r_stencil) / np.linalg.norm(f[1:-1, 1:-1])
    print(f"[check] sample train[0], {n_fine}x{n_fine} grid, a in {{3, 12}} "
          f"(fraction a=12: {np.mean(a == A_POS):.3f}), max u = {u.max():.6f}")
    print(f"[check]   relative residual ||A u - f|| / ||f||          = {rel_sparse:.3e}")
    print(f"[check]   relative residual, independent stencil          = {rel_stencil:.3e}")
    ok &= rel_sparse < 1e-10 and rel_stencil < 1e-10
    # compliance J(a) = integral of f u = min-energy dual, monotone decreasing in a:
    # J(a=12) <= J(a) <= J(a=3). (Pointwise u is NOT bounded this way in general.)
    h2 = (1.0 / (n_fine - 1)) ** 2
    u3 = solve(np.full_like(a, A_NEG), f, args.mean)
    u12 = solve(np.full_like(a, A_POS), f, args.mean)
    j, j3, j12 = (h2 * float(np.sum(f * v)) for v in (u, u3, u12))
    within = j12 <= j <= j3
    print(f"[check]   compliance J(a=12) <= J(a) <= J(a=3)            : {within} "
          f"({j12:.6f} <= {j:.6f} <= {j3:.6f})")
    ok &= within

    # 2. discretisation error of the data: the same field (same modes and xi)
    # thresholded and solved on 2x and 4x finer grids, compared at the output nodes
    R = args.resolution
    xi = np.random.default_rng([args.seed, SPLIT_IDS["train"], 0]).standard_normal((n_fine, n_fine))
    sols = []
    for mult in (1, 2, 4):
        n = mult * (n_fine - 1) + 1
        g = GRF(n, modes=n_fine)
        a_r = threshold(g.evaluate(xi))
        u_r = solve(a_r, np.ones((n, n)), args.mean)
        step = (n - 1) // (R - 1)
        sols.append((n, u_r[::step, ::step]))
    ref_n, ref = sols[-1]
    print(f"[check] binary-coefficient sample train[0] re-solved on finer grids "
          f"(relative L2 difference at the {R}x{R} output nodes vs the {ref_n}x{ref_n} solution):")
    for n, u_r in sols[:-1]:
        d = np.linalg.norm(u_r - ref) / np.linalg.norm(ref)
        print(f"[check]   {n}x{n}: {d:.3e}")

    # 3. manufactured solutions under grid refinement
    for coeff, label in (("one", "a = 1, u = sin(pi x) sin(pi y), f = 2 pi^2 u"),
                         ("smooth", "a = 1 + x + y^2, u = sin(pi x) sin(pi y), f = -div(a grad u)")):
        print(f"[check] manufactured solution: {label}")
        prev = None
        last_ratio = None
        for cells in (10, 20, 40, 80, 160):
            n = cells + 1
            a_m, f_m, u_ex = manufactured(n, coeff)
            u_h = solve(a_m, f_m, args.mean)
            err_max = np.abs(u_h - u_ex).max()
            err_l2 = np.sqrt(np.mean((u_h - u_ex) ** 2))
            if prev is None:
                print(f"[check]   h = 1/{cells:<4d} max err = {err_max:.3e}  rms err = {err_l2:.3e}")
            else:
                last_ratio = prev / err_max
                print(f"[check]   h = 1/{cells:<4d} max err = {err_max:.3e}  rms err = {err_l2:.3e}"
                      f"  ratio(max) = {last_ratio:.3f}")
            prev = err_max
        ok &= last_ratio is not None and 3.8 < last_ratio < 4.2
    print("[check] PASS" if ok else "[check] FAIL")
    return 0 if ok else 1


# --------------------------------------------------------------------------
# Generation
# --------------------------------------------------------------------------

def generate_split(name, count, args, grf, n_fine):
    sub = slice(None, None, args.factor)
    R = args.resolution
    xs = np.empty((count, 1, R, R), dtype=np.float32)
    ys = np.empty((count, 1, R, R), dtype=np.float32)
    f = np.ones((n_fine, n_fine))
    for i in range(count):
        rng = np.random.default_rng([args.seed, SPLIT_IDS[name], i])
        a = threshold(grf.sample(rng))
        u = solve(a, f, args.mean)
        xs[i, 0] = a[sub, sub]
        ys[i, 0] = u[sub, sub]
    return xs, ys


def stats(x, y):
    rel = np.sqrt((y.astype(np.float64) ** 2).sum(axis=(1, 2, 3)))
    return {
        "x_values": sorted(float(v) for v in np.unique(x)),
        "x_fraction_high": float(np.mean(x == A_POS)),
        "y_min": float(y.min()),
        "y_max": float(y.max()),
        "y_mean": float(y.mean()),
        "y_std": float(y.std()),
        "y_l2_norm_mean": float(rel.mean()),
    }


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", default="data/darcy", help="output directory (default data/darcy)")
    p.add_argument("--train", type=int, default=1000, help="training samples (default 1000)")
    p.add_argument("--test", type=int, default=200, help="test samples (default 200)")
    p.add_argument("--resolution", type=int, default=43,
                   help="output grid points per side, boundary included (default 43)")
    p.add_argument("--factor", type=int, default=2,
                   help="solve on factor*(resolution-1)+1 points per side and keep every "
                        "factor-th node (default 2: 85x85 -> 43x43)")
    p.add_argument("--mean", choices=("harmonic", "arithmetic"), default="harmonic",
                   help="mean of a on cell faces (default harmonic)")
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    p.add_argument("--check", action="store_true", help="run the solver self-checks and exit")
    args = p.parse_args(argv)
    if args.resolution < 3 or args.factor < 1 or args.train < 0 or args.test < 0 or args.seed < 0:
        p.error("need --resolution >= 3, --factor >= 1, non-negative --train/--test/--seed")

    if args.check:
        return run_check(args)

    t0 = time.time()
    n_fine = args.factor * (args.resolution - 1) + 1
    grf = GRF(n_fine)
    os.makedirs(args.out, exist_ok=True)
    R = args.resolution
    task = {"kind": "dense", "input_shape": [1, R, R], "num_outputs": 1,
            "loss": "relative_l2", "metric": "relative_l2"}
    meta = {
        "generator": "scripts/data/darcy.py",
        "description": "2D Darcy flow -div(a grad u) = 1 on (0,1)^2, u = 0 on the boundary; "
                       "x = permeability a, y = solution u",
        "seed": args.seed,
        "resolution": R,
        "solver_grid": n_fine,
        "subsample_factor": args.factor,
        "grid": "nodes x_i = i/(resolution-1), boundary nodes included (u = 0 there)",
        "grf": {"covariance": "(-Laplacian + 9 I)^(-2)", "tau": 3.0, "alpha": ALPHA,
                "boundary": "Neumann (cosine series)", "modes_per_axis": n_fine,
                "mean": "zero (constant mode dropped)"},
        "coefficient": {"threshold": 0.0, "value_at_or_above": A_POS, "value_below": A_NEG},
        "source": 1.0,
        "scheme": f"5-point finite volume on the node grid, {args.mean} mean of a on faces, "
                  "SuperLU (scipy.sparse.linalg.splu)",
        "numpy": np.__version__,
        "scipy": scipy.__version__,
        "task": task,
        "splits": {},
    }
    for name, count in (("train", args.train), ("test", args.test)):
        ts = time.time()
        x, y = generate_split(name, count, args, grf, n_fine)
        np.save(os.path.join(args.out, f"{name}_x.npy"), x)
        np.save(os.path.join(args.out, f"{name}_y.npy"), y)
        meta["splits"][name] = {"n": count, "x_shape": list(x.shape), "y_shape": list(y.shape),
                                "dtype": "float32", **(stats(x, y) if count else {})}
        print(f"{name}: x {x.shape} y {y.shape} float32 in {time.time() - ts:.1f}s", flush=True)
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
