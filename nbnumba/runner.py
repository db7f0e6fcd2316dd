"""The ``nanoBragg`` command: parse, render, report and write files as C does."""

from __future__ import annotations

import math
import os
import sys

import numpy as np

from .cargs import RunOptions, config_from_args
from .engine import SimResult, simulate
from .errors import OutputFileError
from .io.cfmt import c_g

RTD = 180.0 * (1.0 / math.pi)


def check_writable(paths) -> None:
    """Fail before rendering if any output cannot be created."""
    for path in paths:
        if path is None:
            continue
        folder = os.path.dirname(os.path.abspath(path)) or "."
        if not os.path.isdir(folder):
            raise OutputFileError(f"{path}: folder {folder} does not exist")
        if not os.access(folder, os.W_OK):
            raise OutputFileError(f"{path}: folder {folder} is not writable")
        if os.path.isdir(path):
            raise OutputFileError(f"{path}: is a folder, not a file")
        if os.path.exists(path) and not os.access(path, os.W_OK):
            raise OutputFileError(f"{path}: file exists and is not writable")


def smv_header_values(result: SimResult) -> dict:
    """Header numbers of C's SMV images, in C's units."""
    info = result.prepared.info
    px = info["pixel_size"]
    return dict(
        pixel_size=px * 1000.0,
        distance=info["distance"] * 1000.0,
        wavelength=info["lambda0"] * 1e10,
        beam_center_x=info["Xbeam"] * 1000.0,
        beam_center_y=info["Ybeam"] * 1000,
        adxv_center_x=info["Fbeam"] * 1000.0,
        adxv_center_y=(info["detsize_s"] - info["Sbeam"]) * 1000,
        mosflm_center_x=(info["Sbeam"] - 0.5 * px) * 1000.0,
        mosflm_center_y=(info["Fbeam"] - 0.5 * px) * 1000,
        denzo_x_beam=(info["Sbeam"] - 0.0 * px) * 1000.0,
        denzo_y_beam=(info["Fbeam"] - 0.0 * px) * 1000,
        dials_origin=tuple(info["dials_origin"]),
        xds_orgx=info["ORGX"],
        xds_orgy=info["ORGY"],
        close_distance=info["close_distance"] * 1000.0,
        phi=info["phi0"] * RTD,
        osc_start=info["phi0"] * RTD,
        osc_range=info["osc"] * RTD,
        twotheta=info["twotheta"] * RTD,
    )


def int_image(result: SimResult, scale: float, adc: float, block_rows: int = 256) -> np.ndarray:
    """Noiseless SMV pixels: ``floor(v * scale + adc + 0.5)`` clipped, ROI only."""
    from .engine import roi_slices

    prep = result.prepared
    rows, cols = roi_slices(prep)
    out = np.zeros((prep.spixels, prep.fpixels), dtype=np.uint16)
    for r0 in range(rows.start, rows.stop, block_rows):
        r1 = min(r0 + block_rows, rows.stop)
        test = result.image[r0:r1, cols].astype(np.float64)
        test *= scale
        test += adc
        np.clip(test, 0.0, 65535.0, out=test)
        test += 0.5
        # C rounds with floorf, i.e. after converting to single precision
        out[r0:r1, cols] = np.floor(test.astype(np.float32)).astype(np.uint16)
    return out


def run_nanobragg(argv, out=None, mode: str | None = None) -> int:
    """Run a nanoBragg command line.  Returns the exit status.

    Errors derived from :class:`~nbnumba.errors.NbnumbaError` propagate to
    the caller (the CLI prints them as one line).
    """
    out = out or sys.stdout
    cfg, run = config_from_args(list(argv), mode=mode)
    outputs = [run.floatfile, run.intfile]
    if run.write_pgm:
        outputs.append(run.pgmfile)
    if run.calculate_noise:
        outputs.append(run.noisefile)
    if run.hklfile is not None:
        outputs.append(None)
    check_writable(outputs)

    def say(text=""):
        print(text, file=out)

    # everything that can reject the run happens before anything is printed
    from .engine import check_dtype, resolve_backend
    from .prepare import prepare

    check_dtype(cfg, run.dtype)
    prep = prepare(cfg)
    backend = resolve_backend(run.backend)
    say(f"nbnumba {cfg.mode} mode: nanoBragg-compatible diffraction simulator")
    for note in run.notes:
        say(note)
    if cfg.hkl is not None:
        for w in getattr(cfg.hkl, "warnings", []):
            say(w)
    info = prep.info
    say(f"{info['convention'].lower()} convention selected.")
    say("pivoting detector around " + ("sample" if info["pivot"] == "sample" else "direct beam spot"))
    for m in prep.messages:
        say(m)
    cell = info["cell_A"]
    say("Unit Cell: " + " ".join(c_g(v) for v in cell))
    say(f"volume = {c_g(info['V_cell'])} A^3")
    xt = info["xtalsize"]
    say(f"crystal is {c_g(xt[0] * 1e6)} x {c_g(xt[1] * 1e6)} x {c_g(xt[2] * 1e6)} microns")
    if run.hklfile is not None and cfg.hkl is not None:
        from .io.hkl import write_fdump

        try:
            write_fdump(run.dumpfile, cfg.hkl)
            say(f"writing dump file for next time: {run.dumpfile}")
        except (OSError, OutputFileError) as exc:
            say(f"WARNING: unable to open dump file: {run.dumpfile} ({exc})")
    say(f"  created a total of {prep.sources.shape[0]} sources:")
    say(f"  created a total of {info['mosaic_domains']} mosaic domains")
    say(f"  {info['hkls']} initialized hkls (all others ={c_g(cfg.default_F)})")
    say(f"  {info['phisteps']} phi steps, {info['oversample']}x{info['oversample']} pixel oversample steps, "
        f"{prep.steps} steps in all")
    say(f"  distance={c_g(info['distance'])} detsize={c_g(info['detsize_f'])}x{c_g(info['detsize_s'])}  "
        f"pixel={c_g(info['pixel_size'])} meters ({prep.fpixels}x{prep.spixels} pixels)")
    say(f"  Xbeam={c_g(info['Xbeam'])} Ybeam={c_g(info['Ybeam'])}")
    say(f"  Fbeam={c_g(info['Fbeam'])} Sbeam={c_g(info['Sbeam'])}")
    say(f"  Xclose={c_g(info['Xclose'])} Yclose={c_g(info['Yclose'])}")
    say(f"  Fclose={c_g(info['Fclose'])} Sclose={c_g(info['Sclose'])}")
    chosen = f"{backend} (chosen by -backend auto)" if run.backend == "auto" else backend
    say(f"  backend: {chosen}, dtype: {run.dtype}")

    progress = None
    if run.progress:
        def progress(frac):
            print(f"{int(frac * 100)}% done", file=out, flush=True)

    result = simulate(cfg, backend=backend, dtype=run.dtype, nthreads=run.nthreads,
                      prepared=prep, progress=progress)
    st = result.stats
    say("")
    say(f"solid angle subtended by detector = {c_g(st.omega_sum)} steradian "
        f"( {c_g(100 * st.omega_sum / 4 / math.pi)}% sphere)")
    report_and_write(result, run, say)
    return 0


def pixel_report(result: SimResult, fpixel: int, spixel: int) -> list[str]:
    """C's ``-printout`` block for one pixel (values of its last evaluation)."""
    from . import physics as P
    from .engine import first_swept_pixel
    from .io.cfmt import c_g

    prep = result.prepared
    fp, ip = prep.fp, prep.ip
    os_ = int(ip[P.IP_OVERSAMPLE])
    last_layer = int(ip[P.IP_THICKSTEPS]) - 1
    pos = P.subpixel_position(fpixel, spixel, os_ - 1, os_ - 1, last_layer * fp[P.FP_THICKSTEP], fp, ip)
    airpath = math.sqrt(pos[0] ** 2 + pos[1] ** 2 + pos[2] ** 2)
    d = [v / airpath for v in pos]
    src = prep.sources[-1]
    lam = src[P.SRC_LAMBDA]
    scat = [(d[i] + src[P.SRC_DIR + i]) / lam for i in range(3)]
    stol = 0.5 * math.sqrt(sum(v * v for v in scat))
    cell = prep.cells[-1, -1]
    hkl = [sum(cell[3 * j + i] * scat[i] for i in range(3)) for j in range(3)]
    hkl0 = [int(math.ceil(v - 0.5)) for v in hkl]
    f_latt = P.lattice_factor(int(ip[P.IP_SHAPE]), *hkl, *hkl0, fp, True)
    f_cell = P.nearest_structure_factor(*hkl0, prep.fhkl, ip, fp[P.FP_DEFAULT_F])
    intensity, polar, capture, omega, _, _ = P.pixel_intensity(
        fpixel, spixel, fp, ip, prep.sources, prep.cells, prep.cells_first, prep.fhkl,
        spixel * prep.fpixels + fpixel == first_swept_pixel(prep), P.INTERP_ON, P.PASS_RENDER)
    twotheta = math.atan2(math.sqrt(pos[1] ** 2 + pos[2] ** 2), pos[0])
    stol_beam = math.sin(twotheta / 2.0) / (prep.info["lambda0"] * 1e10)
    value = float(result.image[spixel, fpixel])
    lines = [
        f"{fpixel:4d} {spixel:4d} : stol = {c_g(stol)} or {c_g(stol_beam)}",
        f"at {c_g(pos[0])} {c_g(pos[1])} {c_g(pos[2])}",
        f"hkl= {hkl[0]:f} {hkl[1]:f} {hkl[2]:f}  hkl0= {hkl0[0]} {hkl0[1]} {hkl0[2]}",
        f" F_cell={c_g(f_cell)}  F_latt={c_g(f_latt)}   I = {c_g(intensity)}",
        f"I/steps {intensity / prep.steps:15.10g}",
        f"polar   {polar:15.10g}",
        f"omega   {omega:15.10g}",
        f"capfrac {capture:15.10g}",
        f"pixel   {value:15.10g}",
        "real-space cell vectors (Angstrom):",
        f"     {'a':<10s}  {'b':<10s}  {'c':<10s}",
    ]
    for axis, label in enumerate("XYZ"):
        lines.append(f"{label}: {cell[axis] * 1e10:11.8f} {cell[3 + axis] * 1e10:11.8f} {cell[6 + axis] * 1e10:11.8f}")
    return lines


def report_and_write(result: SimResult, run: RunOptions, say) -> None:
    """Write the float, SMV, PGM and noise files and print C's statistics."""
    from .io.floatimage import write_float_image
    from .io.pgm import write_pgm
    from .io.smv import write_smv

    prep = result.prepared
    st = result.stats
    if run.printout:
        from .engine import rendered_mask

        f0, s0 = run.printout_pixel
        if f0 >= 0:
            targets = [(f0, s0)] if 0 <= f0 < prep.fpixels and 0 <= s0 < prep.spixels else []
        else:
            targets = [divmod(int(i), prep.fpixels)[::-1] for i in np.flatnonzero(rendered_mask(prep))]
        for fpixel, spixel in targets:
            for line in pixel_report(result, fpixel, spixel):
                say(line)
    pixels = prep.fpixels * prep.spixels
    say(f"writing {run.floatfile} as {pixels} 4-byte floats")
    write_float_image(run.floatfile, result.image)
    say(f"max_I = {c_g(st.max_I)}  at {c_g(st.max_I_x)} {c_g(st.max_I_y)}")
    say(f"mean= {c_g(st.mean)} rms= {c_g(st.rms)} rmsd= {c_g(st.rmsd)}")
    scale = run.intfile_scale
    if scale <= 0.0:
        scale = 1.0
        if st.max_I > 0.0:
            scale = 55000.0 / st.max_I
    say(f"intfile_scale = {c_g(scale)}")
    header = smv_header_values(result)
    say(f"writing {run.intfile} as 2-byte integers")
    write_smv(run.intfile, int_image(result, scale, run.adc_offset), header)
    if run.write_pgm:
        pgm_scale = run.pgm_scale
        if pgm_scale <= 0.0:
            pgm_scale = scale
            if st.rmsd > 0.0:
                pgm_scale = 250.0 / (5.0 * st.rmsd)
        say(f"pgm_scale = {c_g(pgm_scale)}")
        say(f"writing {run.pgmfile} as 1-byte integers")
        write_pgm(run.pgmfile, result.image, pgm_scale, roi=prep.roi)
    if run.calculate_noise:
        from .kernels.noise import poisson_image

        noise, photons, overloads = poisson_image(result.image, prep.roi, run.seed,
                                                  adc_offset=run.adc_offset)
        say(f"{photons:.0f} photons on noise image ({overloads} overloads)")
        say(f"writing {run.noisefile} as 2-byte integers")
        write_smv(run.noisefile, noise, header)
