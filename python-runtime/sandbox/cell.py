"""A code block runs as a Jupyter cell.

The conventions of a Jupyter kernel: the block's namespace is a real module,
`sys.modules['__main__']` (classes and functions defined in it pickle, `unittest.main()` and
`doctest.testmod()` find them); top-level `await`; the last expression's value is displayed unless
the block ends with `;`; `display()`; every displayed value keeps its MIME bundle (text/plain and
the richer forms the object offers); matplotlib figures are displayed once, at `plt.show()` or at
the end of the block, never blank.

With IPython installed (requirements.txt; Debian's python3-ipython locally) its own pieces do what
they do in a kernel: an `InteractiveShell` made once in the zygote supplies `get_ipython()`,
`display()`, `IPython.display`, its `DisplayFormatter` (text/plain as IPython pretty-prints it,
HTML, LaTeX, ... and a figure's PNG), `%magics` and `!commands` (its input transformers, applied
when the block uses that syntax), and matplotlib's inline backend (matplotlib-inline).

The block itself is executed here, not by `InteractiveShell.run_cell`. Measured in a forked child
(sandbox/tests/bench_cell.py and the numbers in issue 13's note): run_cell writes to ~480 of the
zygote's pages on its way (each first write costs a copy-on-write page fault; ~30 us each on this
Firecracker VM, as inside Lambda), 10-15 ms per block, against ~160 for this path; warming it up
in every standby instead cost ~800 faults (25+ ms of CPU per block). The formatter is warmed up in
the standby (~190 pages, cell.warm_child).

Without IPython (or SANDBOX_CELL=plain) the same conventions hold in a smaller form (plain): the
richer forms come from the object's `_repr_*_` methods, figures from matplotlib's Agg backend; no
magics. The zygote's hello says which one runs ("cell", "cell_note"), and the runner logs it.

What a block shows reaches the child's sink (child._Sink) as MIME bundles; errors as exceptions.
"""
from __future__ import annotations

import ast
import builtins
import io
import linecache
import re
import sys
import threading
import tokenize
import types

CELL = "<cell>"
# MIME types kept with a result besides text/plain (image/png becomes an image item).
RICH = ("text/html", "text/markdown", "text/latex", "image/svg+xml", "application/json")
# IPython's own syntax: a line starting with % or !, `x = !cmd`, `obj?`. Only then are the
# block's lines put through IPython's input transformers.
_IPYTHON_SYNTAX = re.compile(r"^[ \t]*[%!]|=[ \t]*!|\?[ \t]*$", re.M)
_CO_COROUTINE = 0x80

mode = "plain"
note = ""
versions: dict = {}
_shell = None           # IPython's InteractiveShell (ipython mode)
_module: types.ModuleType | None = None  # the block's __main__
# Figures this block displayed (id -> figure): the end of the block shows one again only if it
# changed since (a figure as the last value of the cell that drew it comes back once, not twice).
_shown: dict[int, object] = {}


class _Discard:
    """Where output goes while the zygote or a standby warms up: nowhere."""

    def bundle(self, data: dict, result: bool) -> None:
        pass

    def error(self, exc: BaseException) -> None:
        pass


class _Block:
    out = _Discard()
    failed = False
    underscore: object = None  # the value the last result put in `_`


_block = _Block()


def _report(exc: BaseException | None) -> None:
    """An exception the block raised: sys.exit(0) and sys.exit() are a clean end, as in a
    script; anything else fails the block."""
    if exc is None:
        return
    if isinstance(exc, SystemExit) and exc.code in (None, 0):
        return
    _block.failed = True
    _block.out.error(exc)


def _publish(data: dict, result: bool) -> None:
    if isinstance(data, dict):
        _block.out.bundle(data, result)


class _Quitter:
    """exit() and quit() end the block as they end a script."""

    def __init__(self, name: str):
        self.name = name

    def __repr__(self) -> str:
        return f"Use {self.name}() to end the block"

    def __call__(self, code=None):
        raise SystemExit(code)


# --- IPython --------------------------------------------------------------------------------------

def _make_shell():
    # Completion is never used: skip importing jedi (a third of IPython's import time).
    blocked = "jedi" not in sys.modules
    if blocked:
        sys.modules["jedi"] = None  # type: ignore[assignment]
    try:
        import IPython
        from IPython.core.displaypub import DisplayPublisher
        from IPython.core.error import UsageError
        from IPython.core.interactiveshell import InteractiveShell
        from traitlets import Type
        from traitlets.config import Config
    finally:
        if blocked and sys.modules.get("jedi", 0) is None:
            del sys.modules["jedi"]

    class Publisher(DisplayPublisher):
        """display(), IPython.display and figures (display_data): to the sink."""

        def publish(self, data, metadata=None, source=None, *, transient=None, update=False, **kwargs) -> None:
            _publish(data, False)

        def clear_output(self, wait=False) -> None:
            pass  # what was sent is in the result already

    class Shell(InteractiveShell):
        display_pub_class = Type(Publisher)

        def showtraceback(self, exc_tuple=None, filename=None, tb_offset=None, exception_only=False,
                          running_compiled_code=False):
            # An error inside a magic or get_ipython().run_cell(): the block's error.
            etype, value, tb = exc_tuple if exc_tuple else sys.exc_info()
            if value is not None:
                _report(value)

        def showsyntaxerror(self, filename=None, running_compiled_code=False):
            self.showtraceback()

        def showindentationerror(self):
            self.showtraceback()

        def system(self, cmd, *args, **kwargs):
            raise PermissionError("starting programs is disabled in the sandbox")

        system_piped = system_raw = getoutput = system

        def enable_gui(self, gui=None):
            if gui not in (None, "inline"):
                raise UsageError(f"the sandbox has no GUI event loop ({gui}): figures are shown inline")

    config = Config()
    # No history database, no thread saving it (the zygote must stay single-threaded to fork).
    config.HistoryManager.enabled = False
    config.HistoryManager.hist_file = ":memory:"
    shell = Shell.instance(config=config)
    # Bookmarks and the directory history (%cd, %bookmark) in memory: the profile folder on disk is
    # the zygote's, not writable by a block in the root posture, and shared by blocks in the others.
    shell.db = {}
    # sys.exit() ends a block as it ends a script: no advice to use exit() instead.
    import warnings
    warnings.filterwarnings("ignore", message="To exit: use", category=UserWarning,
                            module=r"IPython\.core\.interactiveshell")
    shell.enable_matplotlib("inline")
    _track_figures(shell)
    versions["ipython"] = IPython.__version__
    try:
        import matplotlib_inline
        versions["matplotlib_inline"] = getattr(matplotlib_inline, "__version__", "?")
    except ImportError:
        pass
    return shell


def _track_figures(shell) -> None:
    """A figure rendered through IPython's formatter is recorded as shown (see _shown); the
    end-of-cell flush is ours, not matplotlib-inline's post_execute hook."""
    from matplotlib.figure import Figure
    from matplotlib_inline import backend_inline
    png = shell.display_formatter.formatters["image/png"]
    try:
        render = png.lookup_by_type(Figure)
    except KeyError:
        render = None
    if render is not None:
        def render_and_record(fig, *args, **kwargs):
            data = render(fig, *args, **kwargs)
            if data is not None:
                _mark_shown(fig)
            return data

        png.for_type(Figure, render_and_record)
    try:
        shell.events.unregister("post_execute", backend_inline.flush_figures)
    except ValueError:
        pass


def _mark_shown(fig) -> None:
    # Rendering with bbox_inches="tight" leaves the figure marked stale; from here on only a
    # change to one of its artists marks it again.
    fig.stale = False
    _shown[id(fig)] = fig


def _unchanged_since_shown(fig) -> bool:
    return _shown.get(id(fig)) is fig and not getattr(fig, "stale", True)


def _flush_figures() -> None:
    """The end of the block, as matplotlib-inline's flush_figures: when the block drew with
    pyplot, every open figure is displayed and closed; but a figure the block displayed itself and
    did not change since is not displayed again (a kernel would show it twice)."""
    from matplotlib._pylab_helpers import Gcf
    from matplotlib_inline import backend_inline
    show = backend_inline.show
    if not show._draw_called:
        return
    try:
        for manager in Gcf.get_all_fig_managers():
            fig = manager.canvas.figure
            if not _unchanged_since_shown(fig):
                _publish(_format(fig), False)
    except Exception as exc:
        _report(exc)
    finally:
        show._to_draw = []
        show._draw_called = False
        if Gcf.get_all_fig_managers():
            sys.modules["matplotlib.pyplot"].close("all")


# --- without IPython ------------------------------------------------------------------------------

def _plain_bundle(obj: object) -> dict:
    """text/plain, plus what the object offers through the display protocol (_repr_*_)."""
    try:
        data: dict = {"text/plain": repr(obj)}
    except Exception as exc:
        data = {"text/plain": f"<unrepresentable {type(obj).__name__}: {exc!r}>"}
    if isinstance(obj, type):
        return data
    mpl_figure = sys.modules.get("matplotlib.figure")
    if mpl_figure is not None and isinstance(obj, mpl_figure.Figure):
        if obj.axes or obj.lines:  # as IPython: an empty figure is only its text
            buf = io.BytesIO()
            obj.savefig(buf, format="png", bbox_inches="tight")
            data["image/png"] = buf.getvalue()
            _mark_shown(obj)
        return data
    bundle = getattr(obj, "_repr_mimebundle_", None)
    if callable(bundle):
        try:
            got = bundle(include=None, exclude=None)
            if isinstance(got, tuple):
                got = got[0]
            if isinstance(got, dict):
                data.update(got)
        except Exception:
            pass
    for mime, name in (("text/html", "_repr_html_"), ("text/markdown", "_repr_markdown_"),
                       ("text/latex", "_repr_latex_"), ("image/svg+xml", "_repr_svg_"),
                       ("image/png", "_repr_png_"), ("application/json", "_repr_json_")):
        method = getattr(obj, name, None)
        if mime in data or not callable(method):
            continue
        try:
            value = method()
        except Exception:
            continue
        if isinstance(value, tuple):
            value = value[0]
        if value is not None:
            data[mime] = value
    return data


def _plain_display(*objs, **_kwargs) -> None:
    for obj in objs:
        _publish(_plain_bundle(obj), False)


def _plain_show(*_args, at_end: bool = False, **_kwargs) -> None:
    """plt.show() without IPython: each open figure displayed, then closed. At the end of the block
    (at_end) a figure the block displayed and did not change since is not shown again."""
    plt = sys.modules.get("matplotlib.pyplot")
    if plt is None:
        return
    for num in plt.get_fignums():
        fig = plt.figure(num)
        try:
            if not (at_end and _unchanged_since_shown(fig)):
                _publish(_plain_bundle(fig), False)
        except Exception as exc:
            _report(exc)
        finally:
            plt.close(fig)


# --- running a block ------------------------------------------------------------------------------

def _format(obj: object) -> dict:
    if _shell is not None:
        data, _metadata = _shell.display_formatter.format(obj)
        return data
    return _plain_bundle(obj)


def _semicolon_at_end(code: str) -> bool:
    """The block's last token is `;` (IPython's rule: then its value is not displayed)."""
    if ";" not in code:
        return False
    try:
        tokens = list(tokenize.generate_tokens(io.StringIO(code).readline))
    except (tokenize.TokenError, SyntaxError, IndentationError):
        return False
    for token in reversed(tokens):
        if token.type in (tokenize.ENDMARKER, tokenize.NL, tokenize.NEWLINE, tokenize.COMMENT,
                          tokenize.DEDENT, tokenize.INDENT):
            continue
        return token.type == tokenize.OP and token.string == ";"
    return False


def _show_result(value: object) -> None:
    if value is None:
        return
    ns = _module.__dict__
    # `_` is the last result, as in a kernel, unless the block gave `_` a value of its own.
    if "_" not in ns or ns["_"] is _block.underscore or hidden("_", ns["_"]):
        ns["_"] = _block.underscore = value
    _publish(_format(value), True)


def _execute(code: str) -> None:
    import asyncio
    ns = _module.__dict__
    source = code
    if _shell is not None and _IPYTHON_SYNTAX.search(code):
        source = _shell.transform_cell(code)  # %magic, !command, obj? -> Python
    linecache.cache[CELL] = (len(source), None, source.splitlines(True), CELL)
    flags = getattr(ast, "PyCF_ALLOW_TOP_LEVEL_AWAIT", 0)
    tree = compile(source, CELL, "exec", ast.PyCF_ONLY_AST | flags)
    last = None
    if tree.body and isinstance(tree.body[-1], ast.Expr) and not _semicolon_at_end(source):
        last = tree.body.pop()
    loop = None

    def run(codeobj):
        nonlocal loop
        value = eval(codeobj, ns)
        if codeobj.co_flags & _CO_COROUTINE:  # top-level await
            loop = loop or asyncio.new_event_loop()
            value = loop.run_until_complete(value)
        return value

    try:
        run(compile(tree, CELL, "exec", flags))
        if last is not None:
            _show_result(run(compile(ast.Expression(last.value), CELL, "eval", flags)))
    finally:
        if loop is not None:
            loop.close()


def run(code: str, out) -> str:
    """Run one block; what it shows goes to out (bundle(data, result), error(exc)). Returns
    "completed" or "failed"."""
    _block.out = out
    _block.failed = False
    try:
        _execute(code)
    except BaseException as exc:  # the user's error is a result, not a crash
        _report(exc)
    return end_figures()


def end_figures() -> str:
    """The figures of the block (also after its threads ended): displayed as at a cell's end.
    Returns the block's status so far: "completed" or "failed"."""
    try:
        if _shell is not None:
            _flush_figures()
        else:
            _plain_show(at_end=True)
    except BaseException as exc:
        _report(exc)
    return "failed" if _block.failed else "completed"


# --- the zygote and the child ---------------------------------------------------------------------

_WARM_UP = (
    "1 + 1",
    "print(1 + 1)",
    "[1, 2.5, 'x', {'a': (1,)}]",
    "import pandas as pd\npd.DataFrame({'a': [1.5, 2.0], 'b': ['x', 'y']})",
    "import numpy as np\nnp.arange(3)",
    "import matplotlib.pyplot as plt\nfig, ax = plt.subplots()\nax.plot([1, 3, 2])\nax.set_title('t')",
    "def f(x):\n    return 1 / x\nf(0)",
    "import asyncio\nawait asyncio.sleep(0)",
    "x = 1;",
    "display(2)",
)


def prepare(want: str = "ipython") -> dict:
    """In the zygote, once: the shell (or the plain namespace), warmed up and emptied. want:
    "ipython" (plain if IPython cannot be imported) or "plain". Returns facts for the hello."""
    global mode, note, _shell, _module
    sys.argv[:] = [""]  # as in an interactive interpreter: nothing of the sandbox
    if want != "plain":
        try:
            _shell = _make_shell()
            mode = "ipython"
        except Exception as exc:  # not installed, or broken: the runtime still works
            _shell = None
            note = (f"IPython is not available ({type(exc).__name__}: {exc}); blocks run as plain "
                    "Python cells: no %magics, and display() shows what objects offer through "
                    "their _repr_*_ methods")
    else:
        note = "SANDBOX_CELL=plain: blocks run as plain Python cells (no %magics)"
    if _shell is not None:
        _module = _shell.user_module
    else:
        mode = "plain"
        _module = types.ModuleType("__main__", doc="The code block's namespace")
        _module.__dict__["__builtins__"] = builtins
        builtins.display = _plain_display
        plt = sys.modules.get("matplotlib.pyplot")
        if plt is not None:
            plt.show = _plain_show
    sys.modules["__main__"] = _module
    _warm_up()
    return {"cell": mode, **({"cell_note": note} if note else {}), **versions}


def _empty_namespace() -> None:
    ns = _module.__dict__
    if _shell is not None:
        _shell.reset(new_session=True)
        for name in ("exit", "quit"):
            ns[name] = _shell.user_ns_hidden[name] = _Quitter(name)
        # No output history in a new block: `_` is undefined until a result sets it.
        for name in ("_", "__", "___"):
            ns.pop(name, None)
            _shell.user_ns_hidden.pop(name, None)
        return
    for name in list(ns):
        if name not in ("__name__", "__doc__", "__builtins__", "__loader__", "__spec__", "__package__"):
            del ns[name]


def _warm_up() -> None:
    """Run a few cells in the zygote, then forget them: lazy imports and caches are filled once
    here instead of in every child. Fonts opened while rendering are let go again (a child closes
    every inherited descriptor)."""
    stdout = sys.stdout
    sys.stdout = io.StringIO()
    try:
        for code in _WARM_UP:
            run(code, _Discard())
    finally:
        sys.stdout = stdout
        _block.out = _Discard()
        _block.failed = False
        _block.underscore = None
    plt = sys.modules.get("matplotlib.pyplot")
    if plt is not None:
        plt.close("all")
    font_manager = sys.modules.get("matplotlib.font_manager")
    if font_manager is not None and hasattr(font_manager, "_get_font"):
        font_manager._get_font.cache_clear()
    _empty_namespace()
    linecache.cache.pop(CELL, None)
    _shown.clear()
    import gc
    gc.collect()


def warm_child() -> None:
    """In a standby child, before its job: walk the path a block takes once (an empty block, the
    formatter), so that this child's copies of the zygote's pages on that path are made now, not
    while the block runs. Leaves no trace: no output, nothing in the namespace."""
    out = _block.out
    try:
        _block.out = _Discard()
        _execute("pass")
        if _shell is not None:
            _shell.display_formatter.format(1)
    finally:
        _block.out = out
        _block.failed = False


def namespace() -> dict:
    """The block's namespace: the __main__ module's dict."""
    return _module.__dict__


def hidden(name: str, value: object) -> bool:
    """Names that are not the block's state: dunders, and what the shell put in the namespace
    (In, Out, get_ipython, exit, ...), and `_` while it holds the last result."""
    if name.startswith("__"):
        return True
    if name == "_" and value is _block.underscore:
        return True
    if _shell is None:
        return isinstance(value, _Quitter)
    shown = _shell.user_ns_hidden
    return name in shown and shown[name] is value


def threads_of_block(before: set[int]) -> tuple[list[threading.Thread], list[threading.Thread]]:
    """(non-daemon, daemon) threads still alive that the block started (not in before: idents)."""
    alive = [t for t in threading.enumerate()
             if t is not threading.main_thread() and t.is_alive() and t.ident not in before]
    return [t for t in alive if not t.daemon], [t for t in alive if t.daemon]
