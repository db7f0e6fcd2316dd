"""Per-pixel physics as plain scalar functions.

Every function here is ordinary Python operating on floats, ints, tuples and
arrays.  :mod:`nbnumba.compile` compiles the whole module twice -- once with
``numba.njit(inline="always")`` for the CPU kernel and once with
``numba.cuda.jit(device=True)`` for the GPU kernel -- so the physics has a
single source for both backends.  Functions call each other by their global
names; the compiler rebinds those names to the compiled versions of the
target.

Vectors are 3-tuples ``(x, y, z)`` in the laboratory frame.  Lengths are in
metres, wavelengths in metres, angles in radians, except where a name says
otherwise.  The arithmetic follows the order of operations of the C program
so that parity mode reproduces it to rounding.

Parameter arrays
----------------
``fp`` (float64) and ``ip`` (int64) carry the per-run constants; the index
names below are module-level integers so both compilers see them as
constants.
"""

import math

# ---------------------------------------------------------------- fp indices
FP_FDET = 0  # 3 components: fast detector axis
FP_SDET = 3  # slow detector axis
FP_ODET = 6  # detector normal
FP_PIX0 = 9  # vector from sample to the corner of pixel (0, 0), m
FP_BEAM = 12  # beam direction (unit)
FP_ASTAR = 15  # reciprocal cell vectors of the unrotated crystal, 1/Angstrom
FP_BSTAR = 18
FP_CSTAR = 21
FP_PIXEL_SIZE = 24
FP_SUBPIXEL_SIZE = 25
FP_DISTANCE = 26
FP_CLOSE_DISTANCE = 27
FP_THICKSTEP = 28
FP_MU = 29
FP_THICK = 30
FP_DMIN = 31
FP_NA = 32
FP_NB = 33
FP_NC = 34
FP_FUDGE = 35
FP_KAHN = 36
FP_I_BG = 37
FP_WATER = 38
FP_DEFAULT_F = 39
FP_SIZE = 40

# ---------------------------------------------------------------- ip indices
IP_FPIXELS = 0
IP_SPIXELS = 1
IP_OVERSAMPLE = 2
IP_THICKSTEPS = 3
IP_SOURCES = 4
IP_PHISTEPS = 5
IP_DOMAINS = 6
IP_CURVED = 7
IP_POINT_PIXEL = 8
IP_NOPOLAR = 9
IP_OS_THICK = 10
IP_OS_POLAR = 11
IP_OS_OMEGA = 12
IP_SHAPE = 13
IP_INTERPOLATE = 14
IP_H_MIN = 15
IP_H_MAX = 16
IP_K_MIN = 17
IP_K_MAX = 18
IP_L_MIN = 19
IP_L_MAX = 20
IP_HKLS = 21
IP_ROI_XMIN = 22
IP_ROI_XMAX = 23
IP_ROI_YMIN = 24
IP_ROI_YMAX = 25
IP_HAS_MASK = 26
IP_WEIGHT_ONCE = 27  # 1: spec (weight each contribution), 0: C running-sum product
IP_INTERP_PARITY = 28  # 1: out-of-range switches interpolation off for good
IP_EXACT_SINCG = 29  # 1: sin(N x)/sin(x) exactly as C evaluates it
IP_SIZE = 30

# ---------------------------------------------------------------- source columns
SRC_DIR = 0  # 3 components: unit vector from the sample towards the source
SRC_LAMBDA = 3  # wavelength, m
SRC_INCIDENT = 4  # 3: unit incident direction, from polarization_basis
SRC_POLAR_B = 7  # 3: unit B axis of the polarization frame
SRC_POLAR_E = 10  # 3: unit E axis
SRC_SIZE = 13

PI = math.pi  # a module constant, so the single-precision build can retype it

# largest cell count for which sincg_reduced uses the Chebyshev recurrence
CHEBYSHEV_MAX_N = 8

# crystal shapes
SHAPE_SQUARE = 0
SHAPE_ROUND = 1
SHAPE_GAUSS = 2
SHAPE_TOPHAT = 3

# interpolation state of a pixel in parity mode
INTERP_ON = 0  # interpolation active for the whole pixel
INTERP_SWITCH = 1  # active until the first out-of-range evaluation
INTERP_OFF = 2  # switched off before this pixel

# what a kernel pass computes
PASS_RENDER = 0
PASS_FIND_OUT_OF_RANGE = 1
PASS_PHI_LOOP_RUNS = 2  # does any sub-pixel/source of the pixel reach the phi loop?


def to_float(x):
    """An integer as a float of the kernel's precision.

    Here (double precision) exactly the implicit conversion C makes; the
    single-precision build converts to float32 instead, so that an integer
    mixed into float32 arithmetic does not promote it to float64.
    """
    return float(x)


def to_float_single(x):
    """:func:`to_float` of the single-precision build."""
    return float32(x)  # noqa: F821 - numba.float32, bound by nbnumba.compile


def narrow(x):
    """A value in the precision of the lattice-factor arithmetic.

    Double precision: ``x`` itself.  The single-precision build rounds it to
    float32 (:func:`narrow_single`): the geometry and the Miller indices stay
    in float64 there, and only what follows the reduction to the nearest
    lattice point (the lattice-factor series) runs in float32.
    """
    return x


def narrow_single(x):
    """:func:`narrow` of the single-precision build."""
    return float32(x)  # noqa: F821 - numba.float32, bound by nbnumba.compile


def floor_int(x):
    """``floor(x)`` as an integer."""
    return int(math.floor(x))


def floor_int_single(x):
    """:func:`floor_int` of the single-precision build.

    Numba calls the C library's ``floorf`` for a float32 argument but inlines
    the rounding instruction for float64; widening is exact, so it rounds
    the float64.
    """
    return int(math.floor(float64(x)))  # noqa: F821 - numba.float64, bound by nbnumba.compile


def ceil_int(x):
    """``ceil(x)`` as an integer."""
    return int(math.ceil(x))


def ceil_int_single(x):
    """:func:`ceil_int` of the single-precision build (see :func:`floor_int_single`)."""
    return int(math.ceil(float64(x)))  # noqa: F821 - numba.float64, bound by nbnumba.compile


def unit3(x, y, z):
    """Unit vector along ``(x, y, z)`` (zero vector stays zero)."""
    mag = math.sqrt(x * x + y * y + z * z)
    if mag != 0.0:
        return x / mag, y / mag, z / mag
    return 0.0, 0.0, 0.0


def cross3(ax, ay, az, bx, by, bz):
    """Cross product ``a x b``."""
    return ay * bz - az * by, az * bx - ax * bz, ax * by - ay * bx


def rotate_about_axis(vx, vy, vz, ux, uy, uz, phi):
    """Rotate ``v`` by ``phi`` (right-handed) about the unit axis ``u``."""
    sinphi = math.sin(phi)
    cosphi = math.cos(phi)
    d = (ux * vx + uy * vy + uz * vz) * (1.0 - cosphi)
    rx = ux * d + vx * cosphi + (-uz * vy + uy * vz) * sinphi
    ry = uy * d + vy * cosphi + (uz * vx - ux * vz) * sinphi
    rz = uz * d + vz * cosphi + (-uy * vx + ux * vy) * sinphi
    return rx, ry, rz


def sincg(x, n):
    """Interference function of a grating of ``n`` slits, ``sin(n x)/sin(x)``."""
    if x == 0.0:
        return n
    return math.sin(x * n) / math.sin(x)


def sinpi_small(t):
    """``sin(pi t)`` for ``|t| <= 1/2`` by its Taylor series.

    Nine terms: the truncation error is below 5e-14 relative on that
    interval, which keeps the lattice factor within about 1e-13 of C's value
    (far below the float32 precision of the image) at a fraction of the cost
    of a library call, on both backends.  The polynomial in ``t**2`` is
    evaluated in Estrin's form (pairs of terms, combined with ``t**4``,
    ``t**8`` and ``t**16``): four dependent multiply-adds instead of
    Horner's eight, which matters because the lattice factor is the
    critical path of the innermost loop.
    """
    y = t * t
    y2 = y * y
    y4 = y2 * y2
    y8 = y4 * y4
    a0 = 3.1415926535897932385 - 5.1677127800499700292 * y
    a1 = 2.5501640398773454439 - 0.59926452932079207689 * y
    a2 = 0.082145886611128228799 - 0.0073704309457143507773 * y
    a3 = 0.00046630280576761256442 - 0.000021915353447830215827 * y
    b0 = a0 + a1 * y2
    b1 = a2 + a3 * y2
    p = (b0 + b1 * y4) + 7.9520540014755127848e-7 * y8
    return t * p


def cospi_small(t):
    """``cos(pi t)`` for ``|t| <= 1/2`` by its Taylor series (Estrin's form, as :func:`sinpi_small`)."""
    y = t * t
    y2 = y * y
    y4 = y2 * y2
    y8 = y4 * y4
    a0 = 1.0 - 4.9348022005446793094 * y
    a1 = 4.0587121264167682182 - 1.3352627688545894959 * y
    a2 = 0.23533063035889320454 - 0.025806891390014060013 * y
    a3 = 0.0019295743094039230479 - 0.00010463810492484570712 * y
    a4 = 4.3030695870329470073e-6 - 1.3878952462213772114e-7 * y
    b0 = a0 + a1 * y2
    b1 = a2 + a3 * y2
    b2 = a4 + 3.6047307974625009339e-9 * y2
    return (b0 + b1 * y4) + b2 * y8


def sinpi_small_single(t):
    """:func:`sinpi_small` for single-precision kernels: seven terms.

    The truncation error is below 1e-9, far under float32's resolution
    (6e-8), and the Estrin tree is one level shorter than the nine-term one.
    """
    y = t * t
    y2 = y * y
    y4 = y2 * y2
    a0 = 3.1415926535897932385 - 5.1677127800499700292 * y
    a1 = 2.5501640398773454439 - 0.59926452932079207689 * y
    a2 = 0.082145886611128228799 - 0.0073704309457143507773 * y
    p = (a0 + a1 * y2) + (a2 + 0.00046630280576761256442 * y2) * y4
    return t * p


def cospi_small_single(t):
    """:func:`cospi_small` for single-precision kernels: eight terms.

    Truncation error below 1e-10; the Chebyshev recurrence of
    :func:`sincg_reduced` amplifies it by at most ``n**2`` (64).
    """
    y = t * t
    y2 = y * y
    y4 = y2 * y2
    a0 = 1.0 - 4.9348022005446793094 * y
    a1 = 4.0587121264167682182 - 1.3352627688545894959 * y
    a2 = 0.23533063035889320454 - 0.025806891390014060013 * y
    a3 = 0.0019295743094039230479 - 0.00010463810492484570712 * y
    return (a0 + a1 * y2) + (a2 + a3 * y2) * y4


# The single-precision builds (``-dtype float32``, spec mode) compile these
# functions under the names on the left; everything else is shared.
SINGLE_PRECISION_VARIANTS = {
    "sinpi_small": "sinpi_small_single",
    "cospi_small": "cospi_small_single",
    "to_float": "to_float_single",
    "narrow": "narrow_single",
    "floor_int": "floor_int_single",
    "ceil_int": "ceil_int_single",
}


def sincg_reduced(h, h0, n):
    """``|sincg(pi h, n)|`` for integer ``n`` as a ``(numerator, denominator)`` pair.

    With ``h = h0 + d`` (``|d| <= 1/2``) and ``n`` an integer,
    ``sin(n pi h) / sin(pi h) = +/- sin(n pi d) / sin(pi d)``.  For small ``n``
    the ratio is the Chebyshev polynomial ``U_{n-1}(cos(pi d))`` (one cosine,
    a short recurrence, no division); otherwise, with ``n d = m + f``
    (``|f| <= 1/2``), it is ``+/- sin(pi f) / sin(pi d)``.  All sines and
    cosines take arguments within ``[-pi/2, pi/2]`` and are evaluated inline.

    The sign is left out: the lattice factor only enters the intensity
    squared.  The magnitude agrees with C's direct formula to rounding (and
    is more accurate than it for large ``h``, where ``pi h`` loses digits).
    Returning a pair lets the caller divide once for all three axes.
    """
    d = narrow(h - float(h0))
    m = int(n)
    if m <= CHEBYSHEV_MAX_N:
        two_c = 2.0 * cospi_small(d)
        u_prev = 1.0
        u = two_c
        if m == 1:
            u = 1.0
        for _ in range(m - 2):
            u_next = two_c * u - u_prev
            u_prev = u
            u = u_next
        return u, 1.0
    if d == 0.0:
        return narrow(n), 1.0
    nd = narrow(n) * d
    f = nd - to_float(floor_int(nd + 0.5))
    return sinpi_small(f), sinpi_small(d)


def sinc3(x):
    """Fourier transform of a uniform sphere, normalised to 1 at ``x = 0``."""
    if x == 0.0:
        return 1.0
    return 3.0 * (math.sin(x) / x - math.cos(x)) / (x * x)


def polarization_basis(sx, sy, sz, px, py, pz):
    """Per-source constants of :func:`polarization_factor`.

    ``s`` points from the sample towards the source, ``p`` is the
    polarization (E-vector) axis.  Returns the unit incident direction
    ``i`` (along ``-s``), the unit ``B = p x i`` and the unit ``E = i x B``,
    as nine numbers: the steps C repeats for every pixel, done once.
    """
    ix, iy, iz = unit3(-sx, -sy, -sz)
    px, py, pz = unit3(px, py, pz)
    bx, by, bz = cross3(px, py, pz, ix, iy, iz)
    bx, by, bz = unit3(bx, by, bz)
    ex, ey, ez = cross3(ix, iy, iz, bx, by, bz)
    ex, ey, ez = unit3(ex, ey, ez)
    return ix, iy, iz, bx, by, bz, ex, ey, ez


def polarization_factor(kahn, ix, iy, iz, dx, dy, dz, bx, by, bz, ex, ey, ez):
    """Kahn polarization correction for the diffracted direction ``d``.

    ``i``, ``B`` and ``E`` come from :func:`polarization_basis` of the
    source.  ``kahn`` is the fraction of polarization (0: unpolarized;
    then the azimuthal term is exactly zero and is not evaluated).
    """
    dx, dy, dz = unit3(dx, dy, dz)
    cos2theta = ix * dx + iy * dy + iz * dz
    cos2theta_sqr = cos2theta * cos2theta
    sin2theta_sqr = 1.0 - cos2theta_sqr
    if kahn == 0.0:
        return 0.5 * (1.0 + cos2theta_sqr)
    e_out = dx * ex + dy * ey + dz * ez
    b_out = dx * bx + dy * by + dz * bz
    psi = -math.atan2(b_out, e_out)
    return 0.5 * (1.0 + cos2theta_sqr - kahn * math.cos(2.0 * psi) * sin2theta_sqr)


def lattice_factor(shape, h, k, l, h0, k0, l0, fp, exact):
    """Amplitude of the crystal-shape transform at fractional ``(h, k, l)``.

    ``(h0, k0, l0)`` is the nearest reciprocal-lattice point.  ``exact``
    evaluates the square-crystal factor with C's formula (bit-identical);
    otherwise :func:`sincg_reduced` is used (needs integer cell counts) and
    the sign of the result is not kept, since only its square is used.
    """
    na = fp[FP_NA]
    nb = fp[FP_NB]
    nc = fp[FP_NC]
    fudge = fp[FP_FUDGE]
    f_latt = 1.0
    if shape == SHAPE_SQUARE:
        if exact:
            if na > 1:
                f_latt *= sincg(PI * h, na)
            if nb > 1:
                f_latt *= sincg(PI * k, nb)
            if nc > 1:
                f_latt *= sincg(PI * l, nc)
        else:
            num = 1.0
            den = 1.0
            if na > 1:
                an, ad = sincg_reduced(h, h0, na)
                num *= an
                den *= ad
            if nb > 1:
                bn, bd = sincg_reduced(k, k0, nb)
                num *= bn
                den *= bd
            if nc > 1:
                cn, cd = sincg_reduced(l, l0, nc)
                num *= cn
                den *= cd
            f_latt = num / den
        return f_latt
    dh = h - to_float(h0)
    dk = k - to_float(k0)
    dl = l - to_float(l0)
    if shape == SHAPE_ROUND:
        hrad_sqr = dh * dh * na * na + dk * dk * nb * nb + dl * dl * nc * nc
        return na * nb * nc * 0.723601254558268 * sinc3(PI * math.sqrt(hrad_sqr * fudge))
    dxs = dh * fp[FP_ASTAR] + dk * fp[FP_BSTAR] + dl * fp[FP_CSTAR]
    dys = dh * fp[FP_ASTAR + 1] + dk * fp[FP_BSTAR + 1] + dl * fp[FP_CSTAR + 1]
    dzs = dh * fp[FP_ASTAR + 2] + dk * fp[FP_BSTAR + 2] + dl * fp[FP_CSTAR + 2]
    rad_star_sqr = (dxs * dxs + dys * dys + dzs * dzs) * na * na * nb * nb * nc * nc
    if shape == SHAPE_GAUSS:
        return na * nb * nc * math.exp(-(rad_star_sqr / 0.63 * fudge))
    # top hat
    if rad_star_sqr * fudge < 0.3969:
        return na * nb * nc * 1.0
    return 0.0


# ------------------------------------------------------------------ fast path
# The common case -- square crystal, the reduced sincg (not C's exact one),
# nearest-neighbour structure factors, no per-sub-pixel weights, a render
# pass -- runs the phi/mosaic loop of a (sub-pixel, source) in blocks of
# FAST_BLOCK evaluations: Miller indices for the block, then one
# branch-free loop per crystal axis over the block (which the CPU compiler
# turns into SIMD code across evaluations), then the structure factors and
# the running sum in C's order.  Every value is computed by the same
# operations as in the general loop, so the result is bit for bit the same.
# FAST_PATH is False here and in the CUDA build (the branch is pruned at
# compile time); nbnumba.compile turns it on for the CPU builds and binds
# scratch_block to a stack array and floor_float / ceil_float to the
# rounding instructions.
FAST_PATH = False
FAST_BLOCK = 64
FAST_MIN_EVALUATIONS = 2  # one evaluation per sub-pixel and source: the general loop is faster
# The per-axis loops run over the block rounded up to FAST_LANES evaluations (bound by the CPU builds
# to the vector width of the lattice-factor precision), the extra ones on index 0 and never summed:
# whole vectors instead of a scalar tail (W3: 10 evaluations a pixel, otherwise 2 of them scalar).
FAST_LANES = 1


def scratch_block():
    """A work array of ``FAST_BLOCK`` floats (float64); a stack array in the CPU builds."""
    return [0.0] * FAST_BLOCK


def scratch_block_real():
    """A work array of ``FAST_BLOCK`` floats of the lattice-factor precision (see :func:`narrow`)."""
    return [0.0] * FAST_BLOCK


def floor_float(x):
    """``floor(x)`` as a float (the same value as ``to_float(floor_int(x))``, without integer conversions)."""
    return float(math.floor(x))


def ceil_float(x):
    """``ceil(x)`` as a float (see :func:`floor_float`)."""
    return float(math.ceil(x))


def block_evaluation_applies(ip):
    """True where the run's evaluations fit the block form (fast path and pixel lanes).

    A square crystal with the reduced sincg and no per-sub-pixel weights;
    interpolation is checked by the callers (the fast path on the pixel's
    state, the lanes on the run's option).
    """
    return (ip[IP_SHAPE] == SHAPE_SQUARE and ip[IP_EXACT_SINCG] == 0
            and ip[IP_OS_THICK] == 0 and ip[IP_OS_POLAR] == 0 and ip[IP_OS_OMEGA] == 0)


def fast_path_applies(ip, pass_kind, interpolate):
    """True where :func:`pixel_intensity` may use the block evaluation (see ``FAST_PATH``)."""
    return (pass_kind == PASS_RENDER and ip[IP_PHISTEPS] * ip[IP_DOMAINS] >= FAST_MIN_EVALUATIONS
            and not interpolate and block_evaluation_applies(ip))


def chebyshev_u(d, m):
    """The Chebyshev branch of :func:`sincg_reduced` for ``m <= CHEBYSHEV_MAX_N``, without a data-dependent loop.

    The recurrence always runs ``CHEBYSHEV_MAX_N - 2`` steps and keeps the
    first ``m - 2`` of them (the same operations, so the same value), so
    the caller's loop over evaluations has no inner loop and vectorises.
    """
    two_c = 2.0 * cospi_small(d)
    u_prev = 1.0
    u = two_c
    for step in range(CHEBYSHEV_MAX_N - 2):
        u_next = two_c * u - u_prev
        if step < m - 2:
            u_prev = u
            u = u_next
    if m == 1:
        u = 1.0
    return u


def block_miller(cell_table, phi_tic, mos, count, sx, sy, sz, hs, ks, ls):
    """Fractional Miller indices of ``count`` evaluations from ``(phi_tic, mos)`` on (:func:`fractional_indices`).

    Returns the ``(phi_tic, mos)`` that follows the block.
    """
    domains = cell_table.shape[1]
    for j in range(count):
        hs[j], ks[j], ls[j] = fractional_indices(cell_table, phi_tic, mos, sx, sy, sz)
        mos += 1
        if mos == domains:
            mos = 0
            phi_tic += 1
    return phi_tic, mos


def block_axis(vals, count, n, ds, num, den):
    """One axis of :func:`lattice_factor` (reduced sincg) for a block of evaluations.

    ``vals[j]`` (a fractional index) is replaced by its nearest integer (as a
    float); ``num[j]`` and ``den[j]`` are multiplied by the axis's pair from
    :func:`sincg_reduced`, in its precision.  Two loops: the reduction to
    the nearest integer in float64 (into ``ds``), then the series in the
    lattice-factor precision, so that a single-precision build fills whole
    vectors of float32.
    """
    for j in range(count):
        h = vals[j]
        h0 = ceil_float(h - 0.5)
        vals[j] = h0
        ds[j] = narrow(h - h0)
    m = int(n)
    if m <= CHEBYSHEV_MAX_N:
        for j in range(count):
            num[j] = num[j] * chebyshev_u(ds[j], m)
    else:
        nn = narrow(n)
        for j in range(count):
            d = ds[j]
            nd = nn * d
            f = nd - narrow(floor_float(nd + 0.5))
            s_num = sinpi_small(f)
            s_den = sinpi_small(d)
            if d == 0.0:
                s_num = nn
                s_den = 1.0
            num[j] = num[j] * s_num
            den[j] = den[j] * s_den


def block_lattice_factors(hs, ks, ls, count, na, nb, nc, ds, num, den):
    """Square-crystal lattice factors of ``count`` evaluations (:func:`lattice_factor`, reduced sincg).

    ``hs``, ``ks``, ``ls`` (fractional indices) are replaced by the nearest
    integers (as floats) and ``num[j]`` by the lattice factor, the axes in
    :func:`lattice_factor`'s order (:func:`block_axis` for each axis of more
    than one cell).
    """
    for j in range(count):
        num[j] = 1.0
        den[j] = 1.0
    if na > 1:
        block_axis(hs, count, na, ds, num, den)
    else:
        for j in range(count):
            hs[j] = ceil_float(hs[j] - 0.5)
    if nb > 1:
        block_axis(ks, count, nb, ds, num, den)
    else:
        for j in range(count):
            ks[j] = ceil_float(ks[j] - 0.5)
    if nc > 1:
        block_axis(ls, count, nc, ds, num, den)
    else:
        for j in range(count):
            ls[j] = ceil_float(ls[j] - 0.5)
    for j in range(count):
        num[j] = num[j] / den[j]


def evaluation_term(h0, k0, l0, f_latt, fhkl, ip, default_f, water):
    """``(adds, F^2 F_latt^2)`` of one evaluation at the nearest lattice point ``(h0, k0, l0)`` (floats).

    ``adds`` is False where the general loop of :func:`pixel_intensity`
    skips the evaluation (a zero structure factor, or a zero lattice factor
    without water background).
    """
    f_near = default_f
    if ip[IP_HKLS] != 0:
        f_near = nearest_structure_factor(int(h0), int(k0), int(l0), fhkl, ip, default_f)
    if f_near == 0.0 or (f_latt == 0.0 and water == 0.0):
        return False, 0.0
    return True, f_near * f_near * f_latt * f_latt


def block_sum(intensity, count, hs, ks, ls, f_latts, fhkl, ip, default_f, water):
    """Add a block's ``F^2 F_latt^2`` to ``intensity`` in evaluation order (as the general loop does)."""
    for j in range(count):
        adds, term = evaluation_term(hs[j], ks[j], ls[j], f_latts[j], fhkl, ip, default_f, water)
        if adds:
            intensity += term
    return intensity


def fast_phi_mosaic_sum(intensity, cell_table, sx, sy, sz, fp, fhkl, ip):
    """The phi/mosaic loop of :func:`pixel_intensity` in the fast-path case, in blocks of ``FAST_BLOCK``."""
    hs = scratch_block()
    ks = scratch_block()
    ls = scratch_block()
    ds = scratch_block_real()
    num = scratch_block_real()
    den = scratch_block_real()
    total = cell_table.shape[0] * cell_table.shape[1]
    phi_tic = 0
    mos = 0
    na = fp[FP_NA]
    nb = fp[FP_NB]
    nc = fp[FP_NC]
    for start in range(0, total, FAST_BLOCK):
        count = min(FAST_BLOCK, total - start)
        phi_tic, mos = block_miller(cell_table, phi_tic, mos, count, sx, sy, sz, hs, ks, ls)
        lanes = (count + FAST_LANES - 1) // FAST_LANES * FAST_LANES
        for j in range(count, lanes):
            hs[j] = 0.0
            ks[j] = 0.0
            ls[j] = 0.0
        block_lattice_factors(hs, ks, ls, lanes, na, nb, nc, ds, num, den)
        intensity = block_sum(intensity, count, hs, ks, ls, num, fhkl, ip, fp[FP_DEFAULT_F], fp[FP_WATER])
    return intensity


# Pixel lanes (CPU builds).  In the common case the CPU builds render
# PIXEL_LANES neighbouring pixels of a row at once (render_lanes): every
# step of the loops of pixel_intensity runs as a short loop over the pixels,
# so that LLVM vectorises across pixels -- the geometry (square roots and
# divisions included), the Miller indices (the cell vectors are the same for
# every pixel) and the lattice-factor series.  Each pixel goes through the
# same operations in the same order as when rendered alone (select instead
# of branch where pixels differ), so the values are the same bit for bit.
# PIXEL_LANES is 1 here and in the CUDA build (render_raster_block then
# renders pixel by pixel); nbnumba.compile binds it, with the stack arrays
# scratch_lanes / scratch_lanes_real, for the CPU builds (1 there too where
# Numba vectorises math-library calls with Intel's SVML, whose exp, atan2
# and cos are not the scalar library's bit for bit).
PIXEL_LANES = 1


def scratch_lanes():
    """A work array of ``PIXEL_LANES`` float64 values; a stack array in the CPU builds."""
    return [0.0] * PIXEL_LANES


def scratch_lanes_real():
    """A work array of ``PIXEL_LANES`` floats of the lattice-factor precision (see :func:`narrow`)."""
    return [0.0] * PIXEL_LANES


def lanes_apply(fp, ip):
    """True where the run's options let :func:`render_lanes` render blocks (see :func:`lanes_take`).

    The fast path's case (square crystal, reduced sincg, nearest structure
    factors, no per-sub-pixel weights) without a resolution cut-off.
    """
    return (PIXEL_LANES > 1 and block_evaluation_applies(ip) and ip[IP_INTERPOLATE] == 0
            and fp[FP_DMIN] <= 0.0)


def lanes_take(idx0, count, fp, ip, mask, first_index):
    """True where :func:`render_lanes` renders raster pixels ``idx0 .. idx0+count-1``.

    The run's options allow it (:func:`lanes_apply`), the pixels lie in one
    row, the block does not hold ``first_index`` (the first rendered pixel,
    which in parity mode may start from other cell vectors), and at least
    half a block's worth of them is rendered (inside the ROI and mask): the
    lanes compute every lane, so a mostly empty block is cheaper pixel by
    pixel.
    """
    if not lanes_apply(fp, ip) or count < 1 or count > PIXEL_LANES:
        return False
    fpixel = idx0 - (idx0 // ip[IP_FPIXELS]) * ip[IP_FPIXELS]
    if fpixel + count > ip[IP_FPIXELS]:
        return False
    if first_index >= idx0 and first_index < idx0 + count:
        return False
    rendered = 0
    for j in range(count):
        rendered += raster_position(idx0 + j, ip, mask)[0]
    return 2 * rendered >= PIXEL_LANES


def raster_blocks(start, count, ip):
    """Number of blocks (see :func:`raster_block`) that cover raster pixels ``start .. start+count-1``."""
    if count <= 0:
        return 0
    fpixels = ip[IP_FPIXELS]
    rows = (start + count - 1) // fpixels - start // fpixels + 1
    return rows * ((fpixels + PIXEL_LANES - 1) // PIXEL_LANES)


def raster_block(b, start, count, ip):
    """``(idx0, n)``: block ``b`` of raster pixels ``start .. start+count-1``.

    Each row is cut into blocks of ``PIXEL_LANES`` pixels from its first
    pixel (the last one shorter), so a block never spans two rows; blocks are
    clipped to the range, which may leave them empty (``n = 0``).  In block
    order the pixels come in raster order.
    """
    fpixels = ip[IP_FPIXELS]
    per_row = (fpixels + PIXEL_LANES - 1) // PIXEL_LANES
    row = start // fpixels + b // per_row
    lo = row * fpixels + (b - (b // per_row) * per_row) * PIXEL_LANES
    hi = min(lo + PIXEL_LANES, (row + 1) * fpixels, start + count)
    lo = max(lo, start)
    return lo, max(hi - lo, 0)


def lanes_sum(intensity, hs, ks, ls, f_latts, fhkl, ip, default_f, water):
    """Add one evaluation's ``F^2 F_latt^2`` to each pixel's ``intensity`` (as :func:`block_sum` does for one pixel)."""
    for j in range(PIXEL_LANES):
        adds, term = evaluation_term(hs[j], ks[j], ls[j], f_latts[j], fhkl, ip, default_f, water)
        if adds:
            intensity[j] += term


def lanes_phi_mosaic_sum(intensity, cell_table, sxs, sys_, szs, fp, fhkl, ip, hs, ks, ls, ds, num, den):
    """The phi/mosaic loop of :func:`pixel_intensity` for ``PIXEL_LANES`` pixels (scattering vectors ``s``).

    Each evaluation's operations are those of :func:`fast_phi_mosaic_sum`
    (Miller indices as :func:`fractional_indices`, lattice factors by
    :func:`block_lattice_factors`), and each pixel's sum runs in evaluation
    order.
    """
    na = fp[FP_NA]
    nb = fp[FP_NB]
    nc = fp[FP_NC]
    default_f = fp[FP_DEFAULT_F]
    water = fp[FP_WATER]
    for phi_tic in range(cell_table.shape[0]):
        for mos in range(cell_table.shape[1]):
            # fractional_indices' expressions with the cell read once, outside the pixel loop: calling
            # fractional_indices per pixel re-reads the cell each time (W3's kernel 1.4-1.7x slower)
            ax = cell_table[phi_tic, mos, 0]
            ay = cell_table[phi_tic, mos, 1]
            az = cell_table[phi_tic, mos, 2]
            bx = cell_table[phi_tic, mos, 3]
            by = cell_table[phi_tic, mos, 4]
            bz = cell_table[phi_tic, mos, 5]
            cx = cell_table[phi_tic, mos, 6]
            cy = cell_table[phi_tic, mos, 7]
            cz = cell_table[phi_tic, mos, 8]
            for j in range(PIXEL_LANES):
                hs[j] = ax * sxs[j] + ay * sys_[j] + az * szs[j]
                ks[j] = bx * sxs[j] + by * sys_[j] + bz * szs[j]
                ls[j] = cx * sxs[j] + cy * sys_[j] + cz * szs[j]
            block_lattice_factors(hs, ks, ls, PIXEL_LANES, na, nb, nc, ds, num, den)
            lanes_sum(intensity, hs, ks, ls, num, fhkl, ip, default_f, water)


def render_lanes(total, idx0, count, fp, ip, sources, cells, fhkl, mask, scale, out, i0):
    """Render raster pixels ``idx0 .. idx0+count-1`` into ``out[i0 ..]`` together (see ``PIXEL_LANES``).

    :func:`pixel_intensity` and :func:`render_pixel` for a block that
    :func:`lanes_take` accepts, pixel by pixel the same operations:
    per-pixel state (solid angle, capture fraction and polarization held
    from the first sub-pixel or source that set them, the diffracted
    direction re-normalised with the polarization) is an array over the
    pixels.  All ``PIXEL_LANES`` lanes are computed (those past ``count``
    on pixel positions beyond it, never written); pixels outside the ROI or
    mask are not written either.  Returns ``total`` plus the summed solid
    angle of each rendered pixel, added in raster order.
    """
    thicksteps = ip[IP_THICKSTEPS]
    oversample = ip[IP_OVERSAMPLE]
    n_sources = ip[IP_SOURCES]
    point_pixel = ip[IP_POINT_PIXEL]
    nopolar = ip[IP_NOPOLAR] != 0
    pixel_size, close_distance, thickstep, mu, kahn, odx, ody, odz = subpixel_constants(fp)
    fpixels = ip[IP_FPIXELS]
    spixel = idx0 // fpixels
    fpixel0 = idx0 - spixel * fpixels

    intensity = scratch_lanes()
    polar = scratch_lanes()
    omega = scratch_lanes()
    omega_sum = scratch_lanes()
    capture = scratch_lanes()
    dxs = scratch_lanes()
    dys = scratch_lanes()
    dzs = scratch_lanes()
    sxs = scratch_lanes()
    sys_ = scratch_lanes()
    szs = scratch_lanes()
    hs = scratch_lanes()
    ks = scratch_lanes()
    ls = scratch_lanes()
    ds = scratch_lanes_real()
    num = scratch_lanes_real()
    den = scratch_lanes_real()
    for j in range(PIXEL_LANES):
        intensity[j] = fp[FP_I_BG]
        polar[j] = 0.0
        if nopolar:
            polar[j] = 1.0
        omega[j] = 0.0
        omega_sum[j] = 0.0
        capture[j] = 0.0

    for thick_tic in range(thicksteps):
        odet_depth = to_float(thick_tic) * thickstep
        for j in range(PIXEL_LANES):
            capture[j] = 0.0
            if fp[FP_THICK] == 0.0:
                capture[j] = 1.0
        for sub_s in range(oversample):
            for sub_f in range(oversample):
                for j in range(PIXEL_LANES):
                    px, py, pz = subpixel_position(fpixel0 + j, spixel, sub_f, sub_s, odet_depth, fp, ip)
                    airpath, dx, dy, dz = distance_and_direction(px, py, pz)
                    if omega[j] == 0.0:
                        omega[j] = solid_angle(airpath, pixel_size, close_distance, point_pixel)
                    omega_sum[j] += omega[j]
                    if capture[j] == 0.0:
                        capture[j] = layer_capture_fraction(thick_tic, thickstep, mu, dx * odx + dy * ody + dz * odz)
                    dxs[j] = dx
                    dys[j] = dy
                    dzs[j] = dz
                for source in range(n_sources):
                    for j in range(PIXEL_LANES):
                        sxs[j], sys_[j], szs[j] = scattering_vector(dxs[j], dys[j], dzs[j], sources, source)
                    for j in range(PIXEL_LANES):
                        if polar[j] == 0.0:
                            polar[j] = source_polarization(kahn, sources, source, dxs[j], dys[j], dzs[j])
                            # C re-normalises the diffracted vector in place here
                            dxs[j], dys[j], dzs[j] = unit3(dxs[j], dys[j], dzs[j])
                    lanes_phi_mosaic_sum(intensity, cells, sxs, sys_, szs, fp, fhkl, ip, hs, ks, ls, ds, num, den)
    for j in range(count):
        if raster_position(idx0 + j, ip, mask)[0]:
            out[i0 + j] = pixel_value(intensity[j], polar[j], capture[j], omega[j], ip, scale)
            total += omega_sum[j]
    return total


def nearest_structure_factor(h0, k0, l0, fhkl, ip, default_f):
    """Structure factor of the nearest reciprocal-lattice point."""
    if (
        ip[IP_HKLS] != 0
        and h0 <= ip[IP_H_MAX]
        and h0 >= ip[IP_H_MIN]
        and k0 <= ip[IP_K_MAX]
        and k0 >= ip[IP_K_MIN]
        and l0 <= ip[IP_L_MAX]
        and l0 >= ip[IP_L_MIN]
    ):
        return fhkl[h0 - ip[IP_H_MIN], k0 - ip[IP_K_MIN], l0 - ip[IP_L_MIN]]
    return default_f


def interpolation_out_of_range(h, k, l, ip):
    """True where the 4x4x4 interpolation stencil leaves the HKL grid."""
    h_min = ip[IP_H_MIN]
    k_min = ip[IP_K_MIN]
    l_min = ip[IP_L_MIN]
    h_range = ip[IP_H_MAX] - h_min + 1
    k_range = ip[IP_K_MAX] - k_min + 1
    l_range = ip[IP_L_MAX] - l_min + 1
    return (
        (h - h_min + 3) > h_range
        or (h - 2) < h_min
        or (k - k_min + 3) > k_range
        or (k - 2) < k_min
        or (l - l_min + 3) > l_range
        or (l - 2) < l_min
    )


def lagrange4(x0, x1, x2, x3, y0, y1, y2, y3, x):
    """Cubic Lagrange polynomial through four points, evaluated at ``x``."""
    t0 = (x - x1) * (x - x2) * (x - x3) * y0 / ((x0 - x1) * (x0 - x2) * (x0 - x3))
    t1 = (x - x0) * (x - x2) * (x - x3) * y1 / ((x1 - x0) * (x1 - x2) * (x1 - x3))
    t2 = (x - x0) * (x - x1) * (x - x3) * y2 / ((x2 - x0) * (x2 - x1) * (x2 - x3))
    t3 = (x - x0) * (x - x1) * (x - x2) * y3 / ((x3 - x0) * (x3 - x1) * (x3 - x2))
    return t0 + t1 + t2 + t3


def interpolate_along_l(fhkl, hi, ki, l0f, l_min, l):
    """Cubic interpolation along ``l`` through the four grid points around ``l``.

    ``hi``, ``ki`` are grid (offset) indices; ``l0f = floor(l)`` and ``l`` are
    absolute Miller indices.
    """
    li = l0f - l_min
    return lagrange4(
        to_float(l0f - 1), to_float(l0f), to_float(l0f + 1), to_float(l0f + 2),
        fhkl[hi, ki, li - 1], fhkl[hi, ki, li], fhkl[hi, ki, li + 1], fhkl[hi, ki, li + 2],
        l,
    )


def interpolate_plane(fhkl, hi, k0f, l0f, k_min, l_min, k, l):
    """Bicubic interpolation in the ``(k, l)`` plane of grid row ``hi``."""
    ki = k0f - k_min
    y0 = interpolate_along_l(fhkl, hi, ki - 1, l0f, l_min, l)
    y1 = interpolate_along_l(fhkl, hi, ki, l0f, l_min, l)
    y2 = interpolate_along_l(fhkl, hi, ki + 1, l0f, l_min, l)
    y3 = interpolate_along_l(fhkl, hi, ki + 2, l0f, l_min, l)
    return lagrange4(to_float(k0f - 1), to_float(k0f), to_float(k0f + 1), to_float(k0f + 2), y0, y1, y2, y3, k)


def interpolated_structure_factor(h, k, l, fhkl, ip):
    """Tricubic (Lagrange, tensor-product) interpolation of the structure factor.

    The caller has checked that the 4x4x4 stencil lies inside the grid.
    """
    h0f = floor_int(h)
    k0f = floor_int(k)
    l0f = floor_int(l)
    k_min = ip[IP_K_MIN]
    l_min = ip[IP_L_MIN]
    hi = h0f - ip[IP_H_MIN]
    y0 = interpolate_plane(fhkl, hi - 1, k0f, l0f, k_min, l_min, k, l)
    y1 = interpolate_plane(fhkl, hi, k0f, l0f, k_min, l_min, k, l)
    y2 = interpolate_plane(fhkl, hi + 1, k0f, l0f, k_min, l_min, k, l)
    y3 = interpolate_plane(fhkl, hi + 2, k0f, l0f, k_min, l_min, k, l)
    return lagrange4(to_float(h0f - 1), to_float(h0f), to_float(h0f + 1), to_float(h0f + 2), y0, y1, y2, y3, h)


def subpixel_constants(fp):
    """The run constants of a sub-pixel's corrections.

    Pixel size, close distance, detector layer thickness, attenuation
    coefficient, Kahn polarization factor and the detector normal
    ``(x, y, z)``.
    """
    return (fp[FP_PIXEL_SIZE], fp[FP_CLOSE_DISTANCE], fp[FP_THICKSTEP], fp[FP_MU], fp[FP_KAHN],
            fp[FP_ODET], fp[FP_ODET + 1], fp[FP_ODET + 2])


def subpixel_position(fpixel, spixel, sub_f, sub_s, odet_depth, fp, ip):
    """Laboratory position of a sub-pixel centre (metres from the sample)."""
    oversample = ip[IP_OVERSAMPLE]
    subpixel_size = fp[FP_SUBPIXEL_SIZE]
    fdet = subpixel_size * to_float(fpixel * oversample + sub_f) + subpixel_size / 2.0
    sdet = subpixel_size * to_float(spixel * oversample + sub_s) + subpixel_size / 2.0
    px = fdet * fp[FP_FDET] + sdet * fp[FP_SDET] + odet_depth * fp[FP_ODET] + fp[FP_PIX0]
    py = fdet * fp[FP_FDET + 1] + sdet * fp[FP_SDET + 1] + odet_depth * fp[FP_ODET + 1] + fp[FP_PIX0 + 1]
    pz = fdet * fp[FP_FDET + 2] + sdet * fp[FP_SDET + 2] + odet_depth * fp[FP_ODET + 2] + fp[FP_PIX0 + 2]
    if ip[IP_CURVED] != 0:
        distance = fp[FP_DISTANCE]
        vx = distance * fp[FP_BEAM]
        vy = distance * fp[FP_BEAM + 1]
        vz = distance * fp[FP_BEAM + 2]
        # detector coordinates are read as arc lengths (C's convention)
        nx, ny, nz = rotate_about_axis(
            vx, vy, vz, fp[FP_SDET], fp[FP_SDET + 1], fp[FP_SDET + 2], py / distance
        )
        px, py, pz = rotate_about_axis(
            nx, ny, nz, fp[FP_FDET], fp[FP_FDET + 1], fp[FP_FDET + 2], pz / distance
        )
    return px, py, pz


def distance_and_direction(px, py, pz):
    """Length of ``p`` and its unit vector (``p`` non-zero)."""
    airpath = math.sqrt(px * px + py * py + pz * pz)
    return airpath, px / airpath, py / airpath, pz / airpath


def solid_angle(airpath, pixel_size, close_distance, point_pixel):
    """Solid angle of a (sub-)pixel at ``airpath`` from the sample (``point_pixel``: ``1/airpath^2``)."""
    omega = pixel_size * pixel_size / airpath / airpath * close_distance / airpath
    if point_pixel != 0:
        omega = 1.0 / airpath / airpath
    return omega


def layer_capture_fraction(thick_tic, thickstep, mu, parallax):
    """Fraction of the X-rays absorbed in detector layer ``thick_tic`` (``parallax``: cosine to the normal)."""
    return math.exp(-to_float(thick_tic) * thickstep * mu / parallax) - math.exp(
        -to_float(thick_tic + 1) * thickstep * mu / parallax
    )


def scattering_vector(dx, dy, dz, sources, source):
    """Scattering vector ``(d - i) / lambda`` of unit diffracted direction ``d`` and source ``source``."""
    ix = -sources[source, SRC_DIR]
    iy = -sources[source, SRC_DIR + 1]
    iz = -sources[source, SRC_DIR + 2]
    lam = sources[source, SRC_LAMBDA]
    return (dx - ix) / lam, (dy - iy) / lam, (dz - iz) / lam


def beyond_resolution(sx, sy, sz, dmin):
    """True where ``-dmin`` cuts the scattering vector ``s`` off (``d = 1/|s|`` below ``dmin``)."""
    stol = 0.5 * math.sqrt(sx * sx + sy * sy + sz * sz)
    if dmin > 0.0 and stol > 0.0:
        if dmin > 0.5 / stol:
            return True
    return False


def source_polarization(kahn, sources, source, dx, dy, dz):
    """:func:`polarization_factor` of the diffracted direction ``d`` for source ``source``."""
    return polarization_factor(
        kahn, sources[source, SRC_INCIDENT], sources[source, SRC_INCIDENT + 1],
        sources[source, SRC_INCIDENT + 2], dx, dy, dz,
        sources[source, SRC_POLAR_B], sources[source, SRC_POLAR_B + 1],
        sources[source, SRC_POLAR_B + 2], sources[source, SRC_POLAR_E],
        sources[source, SRC_POLAR_E + 1], sources[source, SRC_POLAR_E + 2],
    )


def fractional_indices(cell_table, phi_tic, mos, sx, sy, sz):
    """Fractional ``(h, k, l)`` of scattering vector ``s`` for phi step ``phi_tic`` and domain ``mos``."""
    h = (cell_table[phi_tic, mos, 0] * sx + cell_table[phi_tic, mos, 1] * sy
         + cell_table[phi_tic, mos, 2] * sz)
    k = (cell_table[phi_tic, mos, 3] * sx + cell_table[phi_tic, mos, 4] * sy
         + cell_table[phi_tic, mos, 5] * sz)
    l = (cell_table[phi_tic, mos, 6] * sx + cell_table[phi_tic, mos, 7] * sy
         + cell_table[phi_tic, mos, 8] * sz)
    return h, k, l


def miller_indices(cell_table, phi_tic, mos, sx, sy, sz):
    """Fractional ``(h, k, l)`` of scattering vector ``s`` and the nearest lattice point ``(h0, k0, l0)``."""
    h, k, l = fractional_indices(cell_table, phi_tic, mos, sx, sy, sz)
    return h, k, l, ceil_int(h - 0.5), ceil_int(k - 0.5), ceil_int(l - 0.5)


def pixel_intensity(fpixel, spixel, fp, ip, sources, cells, cells_first, fhkl,
                    first_pixel, interp_state, pass_kind):
    """Render one detector pixel, in the C program's loop order.

    Loops: detector layer -> sub-pixel (slow, fast) -> source -> phi step ->
    mosaic domain.

    Parameters
    ----------
    fpixel, spixel : int
        Pixel indices (fast, slow).
    fp, ip : ndarray
        Float and integer run constants (see module docstring).
    sources : ndarray, shape (n, SRC_SIZE)
        Unit vectors from sample towards each source, wavelength (m) and
        polarization frame (see the ``SRC_*`` column indices).
    cells : ndarray, shape (phisteps, domains, 9)
        Real-space cell vectors a, b, c (m) for each phi step and domain.
    cells_first : ndarray, shape (phisteps, domains, 9)
        Cell vectors for the very first phi sweep of the run (parity mode's
        phi = 0 carry-over differs there; equal to ``cells`` otherwise).
    fhkl : ndarray, shape (h, k, l)
        Structure-factor grid.
    first_pixel : bool
        This pixel is the first rendered pixel of the run (raster order).
    interp_state : int
        ``INTERP_ON``, ``INTERP_SWITCH`` or ``INTERP_OFF`` (parity mode).
    pass_kind : int
        ``PASS_RENDER``, ``PASS_FIND_OUT_OF_RANGE`` or ``PASS_PHI_LOOP_RUNS``.

    Returns
    -------
    intensity : float
        Sum of ``|F_cell F_latt|^2`` (with any per-sub-pixel weights).
    polar, capture_fraction, omega_pixel : float
        Corrections as held at the end of the loops.
    omega_sum : float
        Sum of the solid angles used (for the C statistics line).
    out_of_range : int
        1 if an interpolation stencil left the HKL grid in this pixel.
    """
    thicksteps = ip[IP_THICKSTEPS]
    oversample = ip[IP_OVERSAMPLE]
    n_sources = ip[IP_SOURCES]
    phisteps = ip[IP_PHISTEPS]
    domains = ip[IP_DOMAINS]
    shape = ip[IP_SHAPE]
    os_thick = ip[IP_OS_THICK] != 0
    os_polar = ip[IP_OS_POLAR] != 0
    os_omega = ip[IP_OS_OMEGA] != 0
    weight_once = ip[IP_WEIGHT_ONCE] != 0
    interp_parity = ip[IP_INTERP_PARITY] != 0
    interpolate = ip[IP_INTERPOLATE] != 0
    exact_sincg = ip[IP_EXACT_SINCG] != 0
    # C multiplies the running sum by per-sub-pixel factors even for a zero
    # contribution, so zero structure factors can only be skipped otherwise
    skip_zero_f = weight_once or not (os_thick or os_polar or os_omega)
    if interp_parity and interp_state == INTERP_OFF:
        interpolate = False
    pixel_size, close_distance, thickstep, mu, kahn, odx, ody, odz = subpixel_constants(fp)
    dmin = fp[FP_DMIN]
    default_f = fp[FP_DEFAULT_F]
    water = fp[FP_WATER]

    intensity = fp[FP_I_BG]
    polar = 0.0
    if ip[IP_NOPOLAR] != 0:
        polar = 1.0
    omega_pixel = 0.0
    omega_sum = 0.0
    capture_fraction = 0.0
    fresh = first_pixel
    out_of_range = 0
    if FAST_PATH:
        fast = fast_path_applies(ip, pass_kind, interpolate)

    for thick_tic in range(thicksteps):
        odet_depth = to_float(thick_tic) * thickstep
        capture_fraction = 0.0
        if fp[FP_THICK] == 0.0:
            capture_fraction = 1.0
        for sub_s in range(oversample):
            for sub_f in range(oversample):
                px, py, pz = subpixel_position(fpixel, spixel, sub_f, sub_s, odet_depth, fp, ip)
                airpath, dx, dy, dz = distance_and_direction(px, py, pz)
                if omega_pixel == 0.0 or os_omega:
                    omega_pixel = solid_angle(airpath, pixel_size, close_distance, ip[IP_POINT_PIXEL])
                omega_sum += omega_pixel
                if capture_fraction == 0.0 or os_thick:
                    capture_fraction = layer_capture_fraction(thick_tic, thickstep, mu, dx * odx + dy * ody + dz * odz)
                for source in range(n_sources):
                    sx, sy, sz = scattering_vector(dx, dy, dz, sources, source)
                    if beyond_resolution(sx, sy, sz, dmin):
                        continue
                    if pass_kind == PASS_PHI_LOOP_RUNS:
                        return 0.0, 0.0, 0.0, 0.0, 0.0, 1
                    if polar == 0.0 or os_polar:
                        polar = source_polarization(kahn, sources, source, dx, dy, dz)
                        # C re-normalises the diffracted vector in place here
                        dx, dy, dz = unit3(dx, dy, dz)
                    cell_table = cells
                    if fresh:
                        cell_table = cells_first
                    if FAST_PATH:
                        if fast:
                            intensity = fast_phi_mosaic_sum(
                                intensity, cell_table, sx, sy, sz, fp, fhkl, ip)
                            fresh = False
                            continue
                    for phi_tic in range(phisteps):
                        for mos in range(domains):
                            h, k, l, h0, k0, l0 = miller_indices(cell_table, phi_tic, mos, sx, sy, sz)
                            f_near = default_f
                            if not interpolate:
                                f_near = nearest_structure_factor(h0, k0, l0, fhkl, ip, default_f)
                                # a zero structure factor adds nothing: skip the lattice factor
                                if skip_zero_f and f_near == 0.0 and pass_kind == PASS_RENDER:
                                    continue
                            f_latt = lattice_factor(shape, h, k, l, h0, k0, l0, fp, exact_sincg)
                            if f_latt == 0.0 and water == 0.0:
                                continue
                            if pass_kind == PASS_FIND_OUT_OF_RANGE:
                                if interpolate and interpolation_out_of_range(h, k, l, ip):
                                    return 0.0, 0.0, 0.0, 0.0, 0.0, 1
                                continue
                            if interpolate and interpolation_out_of_range(h, k, l, ip):
                                out_of_range = 1
                                if interp_parity:
                                    # C switches interpolation off for good and,
                                    # in the same evaluation, takes the nearest F
                                    interpolate = False
                                    f_cell = nearest_structure_factor(h0, k0, l0, fhkl, ip, default_f)
                                else:
                                    f_cell = default_f
                            elif interpolate:
                                f_cell = interpolated_structure_factor(h, k, l, fhkl, ip)
                            else:
                                f_cell = f_near
                            contribution = f_cell * f_cell * f_latt * f_latt
                            if weight_once:
                                if os_thick:
                                    contribution *= capture_fraction
                                if os_polar:
                                    contribution *= polar
                                if os_omega:
                                    contribution *= omega_pixel
                                intensity += contribution
                            else:
                                intensity += contribution
                                if os_thick:
                                    intensity *= capture_fraction
                                if os_polar:
                                    intensity *= polar
                                if os_omega:
                                    intensity *= omega_pixel
                    fresh = False
    if pass_kind != PASS_RENDER:
        return 0.0, 0.0, 0.0, 0.0, 0.0, 0
    return intensity, polar, capture_fraction, omega_pixel, omega_sum, out_of_range


def pixel_value(intensity, polar, capture_fraction, omega_pixel, ip, scale):
    """``scale * intensity`` with the corrections not applied per sub-pixel (see :func:`render_pixel`)."""
    value = scale * intensity
    if ip[IP_OS_THICK] == 0:
        value *= capture_fraction
    if ip[IP_OS_POLAR] == 0:
        value *= polar
    if ip[IP_OS_OMEGA] == 0:
        value *= omega_pixel
    return value


def render_pixel(fpixel, spixel, fp, ip, sources, cells, cells_first, fhkl,
                 first_pixel, interp_state, scale):
    """Photons recorded by one pixel: the intensity loop, then the corrections
    that are applied once per pixel.

    ``scale`` is ``r_e^2 * fluence / steps``.  Corrections not applied per
    sub-pixel use the values held at the end of the loops, as C does (the
    solid angle and polarization of the first sub-pixel, the capture fraction
    of the last detector layer).

    Returns
    -------
    value, omega_sum, out_of_range
        See :func:`pixel_intensity`.
    """
    intensity, polar, capture_fraction, omega_pixel, omega_sum, oor = pixel_intensity(
        fpixel, spixel, fp, ip, sources, cells, cells_first, fhkl,
        first_pixel, interp_state, PASS_RENDER,
    )
    return pixel_value(intensity, polar, capture_fraction, omega_pixel, ip, scale), omega_sum, oor


def pixel_out_of_range(fpixel, spixel, fp, ip, sources, cells, cells_first, fhkl, first_pixel):
    """1 if any interpolation stencil of this pixel leaves the HKL grid."""
    result = pixel_intensity(
        fpixel, spixel, fp, ip, sources, cells, cells_first, fhkl,
        first_pixel, INTERP_ON, PASS_FIND_OUT_OF_RANGE,
    )
    return result[5]


def raster_position(idx, ip, mask):
    """``(rendered, fpixel, spixel)`` of raster index ``idx``.

    ``rendered`` is False outside the ROI (C's inclusive bounds) and where
    the mask is 0: C skips those pixels.
    """
    fpixels = ip[IP_FPIXELS]
    spixel = idx // fpixels
    fpixel = idx - spixel * fpixels
    if (fpixel < ip[IP_ROI_XMIN] or fpixel > ip[IP_ROI_XMAX]
            or spixel < ip[IP_ROI_YMIN] or spixel > ip[IP_ROI_YMAX]):
        return False, fpixel, spixel
    if ip[IP_HAS_MASK] != 0 and mask[idx] == 0:
        return False, fpixel, spixel
    return True, fpixel, spixel


def render_raster_pixel(idx, fp, ip, sources, cells, cells_first, fhkl, mask,
                        first_index, interp_stop, scale):
    """Render pixel ``idx`` (raster order) if it is inside the ROI and mask.

    This is the whole body of both kernels: the CPU kernel calls it from a
    ``prange`` loop, the CUDA kernel from one thread per pixel.

    Returns
    -------
    rendered : int
        1 if the pixel was rendered.
    value, omega_sum, out_of_range
        See :func:`render_pixel`.
    """
    rendered, fpixel, spixel = raster_position(idx, ip, mask)
    if not rendered:
        return 0, 0.0, 0.0, 0
    state = INTERP_ON
    if idx == interp_stop:
        state = INTERP_SWITCH
    elif idx > interp_stop:
        state = INTERP_OFF
    value, omega_sum, oor = render_pixel(
        fpixel, spixel, fp, ip, sources, cells, cells_first, fhkl,
        idx == first_index, state, scale,
    )
    return 1, value, omega_sum, oor


def render_raster_block(total, idx0, count, fp, ip, sources, cells, cells_first, fhkl, mask,
                        first_index, interp_stop, scale, out, i0):
    """Render raster pixels ``idx0 .. idx0+count-1`` into ``out[i0 ..]``: the body of the CPU kernels.

    The kernels loop over the blocks of :func:`raster_block`.  A block that
    :func:`lanes_take` accepts is rendered by :func:`render_lanes`; any
    other, pixel by pixel through :func:`render_raster_pixel`.  Pixels
    outside the ROI or mask are not written.  Returns ``total`` plus the
    summed solid angle of the rendered pixels, added in raster order.
    """
    if PIXEL_LANES > 1:
        if lanes_take(idx0, count, fp, ip, mask, first_index):
            return render_lanes(total, idx0, count, fp, ip, sources, cells, fhkl, mask, scale, out, i0)
    for j in range(count):
        rendered, value, omega_sum, oor = render_raster_pixel(
            idx0 + j, fp, ip, sources, cells, cells_first, fhkl, mask, first_index, interp_stop, scale
        )
        if rendered:
            out[i0 + j] = value
            total += omega_sum
    return total


def raster_pixel_out_of_range(idx, fp, ip, sources, cells, cells_first, fhkl, mask, first_index):
    """1 if pixel ``idx`` is rendered and an interpolation stencil leaves the grid."""
    rendered, fpixel, spixel = raster_position(idx, ip, mask)
    if not rendered:
        return 0
    return pixel_out_of_range(fpixel, spixel, fp, ip, sources, cells, cells_first, fhkl,
                              idx == first_index)


def raster_pixel_runs_phi_loop(idx, fp, ip, sources, cells, cells_first, fhkl, mask):
    """1 if pixel ``idx`` is rendered and some sub-pixel/source passes ``-dmin``.

    In parity mode the phi = 0 carry-over state changes at the end of the
    first phi sweep of the run; with ``-dmin`` the first rendered pixels may
    have no sweep at all, so the pixel that starts from the unrotated cell is
    the first one for which this is 1.
    """
    rendered, fpixel, spixel = raster_position(idx, ip, mask)
    if not rendered:
        return 0
    result = pixel_intensity(fpixel, spixel, fp, ip, sources, cells, cells_first, fhkl,
                             False, INTERP_ON, PASS_PHI_LOOP_RUNS)
    return result[5]


def pixel_reflection_terms(fpixel, spixel, fp, ip, sources, cells, cells_first, fhkl, first_pixel,
                           slot_hkl, slot_c):
    """One pixel's intensity split by reflection: ``I = background + sum_r F_r^2 c_r``.

    The same physics as :func:`pixel_intensity` with nearest-neighbour
    structure factors (the caller refuses interpolation), through the same
    helper functions; the loop structure (detector layer, sub-pixel, source,
    phi step, mosaic domain) and its carried state (solid angle, capture
    fraction and polarization held between sub-pixels, the phi = 0 carry-over
    table of the first pixel) are repeated here, since the render path must
    stay as it is for parity.  Instead of ``F^2 F_latt^2`` each evaluation
    adds ``F_latt^2`` (times the per-sub-pixel corrections) to the slot of
    its reflection ``(h0, k0, l0)``; zero structure factors are not skipped.
    In C's running-product form (parity mode with per-sub-pixel corrections)
    the background and every slot are multiplied alike.

    Parameters
    ----------
    fpixel, spixel, fp, ip, sources, cells, cells_first, fhkl, first_pixel
        As for :func:`pixel_intensity`.
    slot_hkl : ndarray of int64, shape (K, 3)
        Filled with the reflections of the pixel, in order of first use.
    slot_c : ndarray of float, shape (K,)
        Filled with each reflection's coefficient ``c_r`` (before the
        per-pixel corrections of :func:`render_pixel`).

    Returns
    -------
    background : float
        The part without structure factors (``-water``).
    polar, capture_fraction, omega_pixel : float
        As for :func:`pixel_intensity`.
    used : int
        Slots filled.
    overflow : int
        1 if the pixel sees more than ``K`` reflections (the rest are lost).
    """
    thicksteps = ip[IP_THICKSTEPS]
    oversample = ip[IP_OVERSAMPLE]
    n_sources = ip[IP_SOURCES]
    phisteps = ip[IP_PHISTEPS]
    domains = ip[IP_DOMAINS]
    shape = ip[IP_SHAPE]
    os_thick = ip[IP_OS_THICK] != 0
    os_polar = ip[IP_OS_POLAR] != 0
    os_omega = ip[IP_OS_OMEGA] != 0
    weight_once = ip[IP_WEIGHT_ONCE] != 0
    exact_sincg = ip[IP_EXACT_SINCG] != 0
    water = fp[FP_WATER]
    background = fp[FP_I_BG]
    polar = 0.0
    if ip[IP_NOPOLAR] != 0:
        polar = 1.0
    omega_pixel = 0.0
    capture_fraction = 0.0
    fresh = first_pixel
    used = 0
    overflow = 0
    for thick_tic in range(thicksteps):
        odet_depth = to_float(thick_tic) * fp[FP_THICKSTEP]
        capture_fraction = 0.0
        if fp[FP_THICK] == 0.0:
            capture_fraction = 1.0
        for sub_s in range(oversample):
            for sub_f in range(oversample):
                px, py, pz = subpixel_position(fpixel, spixel, sub_f, sub_s, odet_depth, fp, ip)
                airpath, dx, dy, dz = distance_and_direction(px, py, pz)
                if omega_pixel == 0.0 or os_omega:
                    omega_pixel = solid_angle(airpath, fp[FP_PIXEL_SIZE], fp[FP_CLOSE_DISTANCE], ip[IP_POINT_PIXEL])
                if capture_fraction == 0.0 or os_thick:
                    capture_fraction = layer_capture_fraction(
                        thick_tic, fp[FP_THICKSTEP], fp[FP_MU],
                        dx * fp[FP_ODET] + dy * fp[FP_ODET + 1] + dz * fp[FP_ODET + 2])
                for source in range(n_sources):
                    sx, sy, sz = scattering_vector(dx, dy, dz, sources, source)
                    if beyond_resolution(sx, sy, sz, fp[FP_DMIN]):
                        continue
                    if polar == 0.0 or os_polar:
                        polar = source_polarization(fp[FP_KAHN], sources, source, dx, dy, dz)
                        dx, dy, dz = unit3(dx, dy, dz)
                    cell_table = cells
                    if fresh:
                        cell_table = cells_first
                    for phi_tic in range(phisteps):
                        for mos in range(domains):
                            h, k, l, h0, k0, l0 = miller_indices(cell_table, phi_tic, mos, sx, sy, sz)
                            f_latt = lattice_factor(shape, h, k, l, h0, k0, l0, fp, exact_sincg)
                            if f_latt == 0.0 and water == 0.0:
                                continue
                            slot, used = reflection_slot(slot_hkl, slot_c, used, h0, k0, l0)
                            if slot < 0:
                                overflow = 1
                            term = f_latt * f_latt
                            if weight_once:
                                if os_thick:
                                    term *= capture_fraction
                                if os_polar:
                                    term *= polar
                                if os_omega:
                                    term *= omega_pixel
                                if slot >= 0:
                                    slot_c[slot] += term
                            else:
                                if slot >= 0:
                                    slot_c[slot] += term
                                if os_thick:
                                    background = scale_terms(background, slot_c, used, capture_fraction)
                                if os_polar:
                                    background = scale_terms(background, slot_c, used, polar)
                                if os_omega:
                                    background = scale_terms(background, slot_c, used, omega_pixel)
                    fresh = False
    return background, polar, capture_fraction, omega_pixel, used, overflow


def reflection_slot(slot_hkl, slot_c, used, h0, k0, l0):
    """Slot of reflection ``(h0, k0, l0)`` among the first ``used``, or a new one (cleared).

    Returns ``(slot, used)``; ``slot`` is -1 when the reflection is new and
    every slot is taken.
    """
    for slot in range(used):
        if slot_hkl[slot, 0] == h0 and slot_hkl[slot, 1] == k0 and slot_hkl[slot, 2] == l0:
            return slot, used
    if used == slot_c.shape[0]:
        return -1, used
    slot_hkl[used, 0] = h0
    slot_hkl[used, 1] = k0
    slot_hkl[used, 2] = l0
    slot_c[used] = 0.0
    return used, used + 1


def scale_terms(background, slot_c, used, factor):
    """Multiply the first ``used`` slots by ``factor``; return ``background * factor``."""
    for j in range(used):
        slot_c[j] *= factor
    return background * factor


def raster_reflection_terms(idx, fp, ip, sources, cells, cells_first, fhkl, mask, first_index, scale,
                            slot_hkl, slot_c):
    """:func:`pixel_reflection_terms` of raster pixel ``idx`` with the per-pixel corrections of :func:`render_pixel`.

    Returns ``(rendered, background, used, overflow)``; ``slot_c`` holds the
    final coefficients (photons per unit ``F^2``).
    """
    rendered, fpixel, spixel = raster_position(idx, ip, mask)
    if not rendered:
        return 0, 0.0, 0, 0
    background, polar, capture_fraction, omega_pixel, used, overflow = pixel_reflection_terms(
        fpixel, spixel, fp, ip, sources, cells, cells_first, fhkl, idx == first_index, slot_hkl, slot_c)
    factor = pixel_value(1.0, polar, capture_fraction, omega_pixel, ip, scale)  # scale * 1.0 is scale exactly
    for j in range(used):
        slot_c[j] *= factor
    return 1, background * factor, used, overflow
