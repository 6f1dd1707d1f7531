"""Hub names: the local Hugging Face cache first, then the hub only if it answers within seconds.

>>> model = cache_first(
...     lambda local: AutoModel.from_pretrained("bert-base-uncased", local_files_only=local),
...     offline=hub_offline_requested(kwargs),
...     not_cached=lambda reason: WeightsError(f"'bert-base-uncased' is not cached: {reason}"),
... )

Without a network, huggingface_hub retries a failed request five times (1 + 2 + 4 + 8 + 8 s)
for each file before it gives up, so a name that is not cached took half a minute or more to
fail. Here the first attempt reads the cache only; when the name is not there, one short
request (:data:`PROBE_TIMEOUT` seconds, in a thread, so a resolver that hangs cannot hold
us) tells whether the hub answers at all; only then is the download tried.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TypeVar

from visualizer._errors import WeightsError

__all__ = [
    "OFFLINE_HOWTO",
    "PROBE_TIMEOUT",
    "cache_first",
    "hub_cache",
    "hub_offline",
    "hub_offline_requested",
    "hub_unreachable",
    "is_cache_miss",
    "is_local_path",
    "missing_folder",
]

T = TypeVar("T")

#: Seconds the hub has to answer one HEAD request before it counts as unreachable.
PROBE_TIMEOUT = 5.0

#: The common end of every "not cached" message.
OFFLINE_HOWTO = (
    "or a hub name whose files are already cached: download it once where the hub can be reached, "
    "then set HF_HUB_OFFLINE=1 so that nothing asks the network."
)

_offline_lock = threading.Lock()


def is_local_path(name: str | Path) -> bool:
    """Whether ``name`` is a file or folder here (then no hub is involved)."""
    return Path(name).expanduser().exists()


def missing_folder(name: str | Path, caller: str) -> WeightsError | None:
    """The error for a ``name`` that is meant as a folder here but is none, or None.

    A hub name is ``name`` or ``org/name``; a Path, or a name that starts with ``/``, ``.`` or ``~``
    or has more than one ``/``, is a folder.
    """
    text = str(name)
    if is_local_path(name):
        return None
    if not (isinstance(name, Path) or text.startswith(("/", ".", "~", "\\")) or text.count("/") > 1):
        return None
    return WeightsError(
        f"{text!r} is not a file or folder here, and a hub name is 'name' or 'org/name'. "
        f"Fix: give {caller} the folder where save_pretrained() wrote the model."
    )


def hub_cache() -> str:
    """The folder of the Hugging Face hub cache (``$HF_HUB_CACHE``, else ``$HF_HOME/hub``)."""
    from huggingface_hub import constants

    return str(constants.HF_HUB_CACHE)


def hub_offline_requested(kwargs: dict) -> bool:
    """Whether the user keeps the hub out: ``local_files_only=True`` or ``HF_HUB_OFFLINE=1``."""
    from huggingface_hub import constants

    return bool(kwargs.get("local_files_only")) or bool(constants.HF_HUB_OFFLINE)


@contextlib.contextmanager
def hub_offline() -> Iterator[None]:
    """huggingface_hub's offline mode for the block (timm offers no ``local_files_only``): every hub
    request in the process fails at once, and files come from the cache.

    It is process-wide: a hub request from another thread during the block fails too.
    """
    from huggingface_hub import constants

    with _offline_lock:
        before = constants.HF_HUB_OFFLINE
        constants.HF_HUB_OFFLINE = True
        try:
            yield
        finally:
            constants.HF_HUB_OFFLINE = before


def is_cache_miss(error: BaseException) -> bool:
    """Whether ``error`` (or what caused it) says a file is not in the cache and the hub was kept out."""
    try:
        from huggingface_hub.errors import LocalEntryNotFoundError, OfflineModeIsEnabled
    except ImportError:  # huggingface_hub before 0.23
        from huggingface_hub.utils import LocalEntryNotFoundError, OfflineModeIsEnabled
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        if isinstance(current, (LocalEntryNotFoundError, OfflineModeIsEnabled)):
            return True
        seen.add(id(current))
        current = current.__cause__ or current.__context__
    return False


def hub_unreachable(timeout: float = PROBE_TIMEOUT) -> str | None:
    """None when the hub answers a HEAD request within ``timeout`` seconds, else why not.

    Any HTTP answer counts as reachable; proxies and ``HF_ENDPOINT`` are honoured, as
    huggingface_hub's own session is used.
    """
    from huggingface_hub import constants, get_session

    outcome: dict[str, BaseException | None] = {}

    def probe() -> None:
        try:
            get_session().head(constants.ENDPOINT, timeout=timeout)  # redirects are not followed
            outcome["error"] = None
        except Exception as error:  # every failure means the same: no hub from here
            outcome["error"] = error

    thread = threading.Thread(target=probe, name="visualizer-hub-probe", daemon=True)
    thread.start()
    thread.join(timeout + 1.0)  # the resolver is outside the request's timeout: bound it here
    if "error" not in outcome:
        return f"{constants.ENDPOINT} did not answer within {timeout:g} s"
    error = outcome["error"]
    if error is None:
        return None
    return f"{constants.ENDPOINT} cannot be reached ({type(error).__name__}: {error})"


def cache_first(
    load: Callable[[bool], T],
    *,
    offline: bool,
    not_cached: Callable[[str], WeightsError],
    refresh: bool = False,
) -> T:
    """``load(True)`` (cache only, in :func:`hub_offline`); if the files are not cached, ``load(False)``
    when the hub answers.

    ``offline``: the user keeps the hub out (see :func:`hub_offline_requested`), so a cache
    miss is final. ``not_cached(reason)`` builds the error for a miss that cannot be filled.
    ``refresh`` (``force_download=True``): the user asks for the hub, so ``load(False)`` at once.
    Errors of ``load`` other than a cache miss propagate unchanged.
    """
    if refresh:
        return load(False)
    try:
        # Offline mode as well as the cache: huggingface_hub otherwise still fetches, once per
        # process, a registry for its user-agent header, even with local_files_only=True.
        with hub_offline():
            return load(True)
    except OSError as error:  # huggingface_hub's cache misses derive from it
        if not is_cache_miss(error):
            raise
        if offline:
            raise not_cached("HF_HUB_OFFLINE=1 or local_files_only=True keeps the hub out") from error
        miss = error
    reason = hub_unreachable()
    if reason is not None:
        raise not_cached(reason) from miss
    return load(False)
