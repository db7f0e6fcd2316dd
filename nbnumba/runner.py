"""The ``nanoBragg`` command: parse, render, report and write files as C does."""

from __future__ import annotations

import math
import sys

import numpy as np

from .cargs import RunOptions, config_from_args
from .engine import SimResult, simulate
from .errors import OutputFileError
from .io.cfmt import c_g

RTD = 180.0 * (1.0 / math.pi)


def run_inputs(run: RunOptions) -> list[str]:
    """Files a nanoBragg run reads (none of them may be an output).

    Parameters
    ----------
    run : RunOptions

    Returns
    -------
    list of str
        ``-hkl``, ``-pdb``, ``-mat``, ``-sourcefile``, ``-mask``, ``-img``,
        ``-stol`` and, when neither ``-hkl`` nor ``-pdb`` is given, the
        ``Fdump.bin`` cache that is read.
    """
    paths = [run.hklfile, run.pdbfile, run.matfile, run.sourcefile, run.maskfile, run.imgfile, run.stolfile]
    if run.hklfile is None and run.pdbfile is None:
        paths.append(run.dumpfile)
    return [p for p in paths if p is not None]


def run_outputs(run: RunOptions) -> list[str]:
    """Files a nanoBragg run writes, in C's order (the Fdump cache first)."""
    paths = [run.dumpfile] if run.hklfile is not None else []
    paths += [run.floatfile, run.intfile]
    if run.write_pgm:
        paths.append(run.pgmfile)
    if run.calculate_noise:
        paths.append(run.noisefile)
    return paths + [path for path, _fmt in extra_outputs(run)]


EXTRA_FORMATS = (("cbffile", "cbf"), ("h5file", "nexus"), ("tifffile", "tiff"), ("edffile", "edf"),
                 ("pngfile", "png"))
"""nbnumba's own output flags (RunOptions attribute, registry format), written after C's files."""


def extra_outputs(run: RunOptions) -> list[tuple[str, str]]:
    """``(path, format)`` of the -cbffile, -h5file, -tifffile, -edffile and -pngfile outputs given."""
    return [(getattr(run, attr), fmt) for attr, fmt in EXTRA_FORMATS if getattr(run, attr) is not None]


def check_writable(paths, inputs=(), optional=()) -> None:
    """Fail before rendering if any output cannot or must not be written.

    See :func:`nbnumba.io.outputs.check_outputs`: missing or unwritable
    folders, two outputs on one file, an output that is an input.
    """
    from .io.outputs import check_outputs

    check_outputs(paths, inputs, optional)


def smv_header_values(result: SimResult) -> dict:
    """Header numbers of C's SMV images, in C's units.

    The detector supplies its geometry and every convention's beam centre
    (:meth:`nbnumba.stages.Detector.header_values`); the beam its wavelength
    and the sampling the spindle.
    """
    prep = result.prepared
    phi0, osc = prep.sampling.phi0, prep.sampling.osc
    return dict(
        prep.detector.header_values(),
        wavelength=prep.beam.lambda0 * 1e10,
        phi=phi0 * RTD,
        osc_start=phi0 * RTD,
        osc_range=osc * RTD,
    )


def run_nanobragg(argv, out=None, mode: str | None = None) -> int:
    """Run a nanoBragg command line.  Returns the exit status.

    Errors derived from :class:`~nbnumba.errors.NbnumbaError` propagate to
    the caller (the CLI prints them as one line).
    """
    out = out or sys.stdout
    cfg, run = config_from_args(list(argv), mode=mode, fdump_cache=True)
    check_writable(run_outputs(run), run_inputs(run), optional=[run.dumpfile])

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
    det, xtal, samp = prep.detector, prep.crystal, prep.sampling
    say(f"{det.convention.lower()} convention selected.")
    say("pivoting detector around " + ("sample" if det.pivot == "sample" else "direct beam spot"))
    for m in prep.messages:
        say(m)
    cell = xtal.cell.cell_A
    say("Unit Cell: " + " ".join(c_g(v) for v in cell))
    say(f"volume = {c_g(xtal.cell.V_cell)} A^3")
    xt = xtal.xtalsize
    say(f"crystal is {c_g(xt[0] * 1e6)} x {c_g(xt[1] * 1e6)} x {c_g(xt[2] * 1e6)} microns")
    if run.hklfile is not None and cfg.hkl is not None:
        from .io.hkl import write_fdump

        try:
            write_fdump(run.dumpfile, cfg.hkl)
            say(f"writing dump file for next time: {run.dumpfile}")
        except (OSError, OutputFileError) as exc:
            say(f"WARNING: unable to open dump file: {run.dumpfile} ({exc})")
    say(f"  created a total of {prep.sources.shape[0]} sources:")
    say(f"  created a total of {xtal.mosaic_domains} mosaic domains")
    say(f"  {xtal.hkls} initialized hkls (all others ={c_g(cfg.default_F)})")
    say(f"  {samp.phisteps} phi steps, {samp.oversample}x{samp.oversample} pixel oversample steps, "
        f"{prep.steps} steps in all")
    say(f"  distance={c_g(det.distance)} detsize={c_g(det.detsize_f)}x{c_g(det.detsize_s)}  "
        f"pixel={c_g(det.pixel_size)} meters ({prep.fpixels}x{prep.spixels} pixels)")
    say(f"  Xbeam={c_g(det.Xbeam)} Ybeam={c_g(det.Ybeam)}")
    say(f"  Fbeam={c_g(det.Fbeam)} Sbeam={c_g(det.Sbeam)}")
    say(f"  Xclose={c_g(det.Xclose)} Yclose={c_g(det.Yclose)}")
    say(f"  Fclose={c_g(det.Fclose)} Sclose={c_g(det.Sclose)}")
    chosen = f"{backend} (chosen by -backend auto)" if run.backend == "auto" else backend
    threads = ""
    if backend == "cpu":
        from .kernels.native import default_threads

        count = int(run.nthreads) if run.nthreads else default_threads()
        threads = f", {count} thread{'s' if count != 1 else ''}"
    say(f"  backend: {chosen}, dtype: {run.dtype}{threads}")

    progress = None
    if run.progress:
        def progress(frac):
            print(f"{int(frac * 100)}% done", file=out, flush=True)

    result = simulate(cfg, backend=backend, dtype=run.dtype, nthreads=run.nthreads,
                      prepared=prep, progress=progress)
    st = result.stats
    for line in result.warnings:
        say(line)
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
    stol_beam = math.sin(twotheta / 2.0) / (prep.beam.lambda0 * 1e10)
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
    """Print C's statistics and write the float, SMV, PGM and noise files.

    The files are written together through one
    :class:`~nbnumba.io.outputs.OutputSet`: all of them appear, or (on any
    failure) none changes.
    """
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
    from .io.outputs import Frame, OutputSet, get_writer

    frame = Frame.from_result(result, intfile_scale=run.intfile_scale, pgm_scale=run.pgm_scale,
                              adc_offset=run.adc_offset, seed=run.seed, counting_noise=run.calculate_noise)
    frame.extra["png_scale"] = run.png_scale
    pixels = prep.fpixels * prep.spixels
    with OutputSet(inputs=run_inputs(run)) as out:
        say(f"writing {run.floatfile} as {pixels} 4-byte floats")
        out.add_frame(run.floatfile, "float", frame)
        say(f"max_I = {c_g(st.max_I)}  at {c_g(st.max_I_x)} {c_g(st.max_I_y)}")
        say(f"mean= {c_g(st.mean)} rms= {c_g(st.rms)} rmsd= {c_g(st.rmsd)}")
        say(f"intfile_scale = {c_g(frame.int_scale)}")
        say(f"writing {run.intfile} as 2-byte integers")
        out.add_frame(run.intfile, "smv", frame)
        if run.write_pgm:
            say(f"pgm_scale = {c_g(frame.pgm_scale_used)}")
            say(f"writing {run.pgmfile} as 1-byte integers")
            out.add_frame(run.pgmfile, "pgm", frame)
        if run.calculate_noise:
            noise = frame.noise
            say(f"{noise.photons:.0f} photons on noise image ({noise.overloads} overloads)")
            say(f"writing {run.noisefile} as 2-byte integers")
            out.add_frame(run.noisefile, "noise", frame)
        for path, fmt in extra_outputs(run):
            writer = get_writer(fmt)
            say(f"writing {path} {writer.description}")
            out.add_frame(path, fmt, frame)
        out.commit()
