"""Downloads that survive dropped connections, a local cache, and safe archive extraction.

Every file arrives under a temporary name (`<name>.part`) and is renamed into place only
when it is complete and, when a sha256 is known, verified. So a file that exists under its
final name is always whole, and a second call costs no network at all.

Environment:
    MINILTH_CACHE    where cached_download() keeps files (default ~/.cache/minilth)
    MINILTH_OFFLINE  1/true/yes: never touch the network; use only what is in the cache
"""
from __future__ import annotations

import hashlib
import os
import posixpath
import re
import shutil
import tarfile
import tempfile
import time
import zipfile
from pathlib import Path, PurePosixPath
from urllib.parse import unquote, urlsplit

import requests
from tqdm.auto import tqdm

from ..errors import DownloadError

CHUNK_BYTES = 1 << 20
# Small network reads: a cut connection loses at most the chunk being read.
NETWORK_CHUNK_BYTES = 1 << 16
TIMEOUT_S = (15, 60)  # (connect, read between two chunks)
MAX_ATTEMPTS = 5
RETRY_WAIT_S = 1.0  # doubled after every failed attempt
_RETRYABLE_STATUS = {408, 429, 500, 502, 503, 504}
# A named client: some hosts refuse a library's default agent (reported for wikitext.smerity.com
# with Python's urllib in IST-DASLab/Quartet#11).
USER_AGENT = f"minilth/0.1 (python-requests/{requests.__version__})"


_show_bars = True  # the bars of downloads and unpacking; a command's --quiet turns them off


def show_progress(shown: bool) -> None:
    """Shows or hides the progress bars of downloads and unpacking in this process (a command's --quiet)."""
    global _show_bars
    _show_bars = shown


class _Interrupted(Exception):
    """A transfer that stopped early; the next attempt resumes from the .part file."""


# ---------------------------------------------------------------------------- download


def download(url: str, dest: Path, sha256: str | None = None, desc: str | None = None) -> Path:
    """Return `dest` after fetching `url` into it: resumable, retried, sha256-checked, atomic.

    An existing `dest` (matching `sha256` when given) is returned without any request.
    """
    dest = Path(dest)
    expected = sha256.lower() if sha256 else None
    if dest.is_file() and (expected is None or file_sha256(dest) == expected):
        return dest
    dest.parent.mkdir(parents=True, exist_ok=True)
    # a real write, before any network: permission bits do not bind root, nor tell of a read-only mount
    tempfile.TemporaryFile(dir=dest.parent).close()
    part = part_path(dest)
    local = local_source(url)
    if local is not None:  # a mirror on this machine: a folder path or a file:// URL
        if not local.is_file():
            raise DownloadError(f"{local} not found: the local mirror holds no {local.name}")
        shutil.copyfile(local, part)
    else:
        _fetch_with_retries(url, part, desc or dest.name)
    if expected is not None:
        actual = file_sha256(part)
        if actual != expected:
            part.unlink()
            raise DownloadError(f"{url}: sha256 mismatch (expected {expected}, got {actual}); "
                                "the file was deleted: run again, or check the URL or mirror")
    os.replace(part, dest)
    return dest


def local_source(url: str) -> Path | None:
    """Returns the file a file:// URL or a plain path names, None for http(s); DownloadError for another scheme."""
    scheme = urlsplit(url).scheme.lower()
    if scheme in ("http", "https"):
        return None
    if scheme == "file":
        return Path(unquote(urlsplit(url).path))
    if scheme and len(scheme) > 1:  # one letter is a Windows drive, C:\...
        raise DownloadError(f"{url}: a mirror must be http(s)://, file:// or a local folder, not {scheme}://")
    return Path(url).expanduser()


def part_path(dest: Path) -> Path:
    """The temporary name a download of `dest` is written under until it is complete."""
    return dest.with_name(dest.name + ".part")


def file_sha256(path: Path) -> str:
    """The hex sha256 digest of a file, read in chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(CHUNK_BYTES), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _fetch_with_retries(url: str, part: Path, desc: str) -> None:
    for attempt in range(1, MAX_ATTEMPTS + 1):
        try:
            _fetch(url, part, desc)
            return
        except (_Interrupted, requests.ConnectionError, requests.Timeout,
                requests.exceptions.ChunkedEncodingError) as err:
            if attempt == MAX_ATTEMPTS:
                raise DownloadError(f"{url}: download failed after {MAX_ATTEMPTS} attempts "
                                    f"({_one_line(err)}); check the network and run again "
                                    "to resume") from err
            time.sleep(RETRY_WAIT_S * 2 ** (attempt - 1))
        except requests.RequestException as err:  # bad URL, too many redirects, ...
            raise DownloadError(f"{url}: {_one_line(err)}") from err


def _fetch(url: str, part: Path, desc: str) -> None:
    """Append the missing bytes of `url` to `part` (or restart it); raise _Interrupted when cut short."""
    offset = part.stat().st_size if part.exists() else 0
    # identity: a gzip-encoded body has a Content-Length that does not match what we write,
    # and byte ranges of it cannot be resumed.
    headers = {"Accept-Encoding": "identity", "User-Agent": USER_AGENT}
    if offset:
        headers["Range"] = f"bytes={offset}-"
    with requests.get(url, headers=headers, stream=True, timeout=TIMEOUT_S) as response:
        if response.status_code == 416 and offset:
            _handle_unsatisfiable_range(response, part, offset)
            return
        _check_status(url, response)
        if offset and response.status_code != 206:
            offset = 0  # the server ignored the Range header and sends everything: start over
        elif offset and _range_start(response) != offset:
            part.unlink()
            raise _Interrupted("the server resumed at the wrong offset")
        total = _total_size(response, offset)
        with open(part, "ab" if offset else "wb") as f, \
                tqdm(total=total, initial=offset, unit="B", unit_scale=True, unit_divisor=1024,
                     desc=desc, leave=False, disable=not _show_bars) as bar:
            for chunk in response.iter_content(NETWORK_CHUNK_BYTES):
                f.write(chunk)
                bar.update(len(chunk))
    size = part.stat().st_size
    if total is not None and size < total:
        raise _Interrupted(f"connection closed after {size} of {total} bytes")


def _handle_unsatisfiable_range(response: requests.Response, part: Path, offset: int) -> None:
    # 416 means the .part is at least as long as the file: complete if the sizes agree.
    match = re.match(r"bytes \*/(\d+)", response.headers.get("Content-Range", ""))
    if match and int(match.group(1)) == offset:
        return
    part.unlink()
    raise _Interrupted("the partial file is longer than the remote file; restarting")


def _check_status(url: str, response: requests.Response) -> None:
    if response.status_code < 400:
        return
    message = f"{url}: HTTP {response.status_code} {response.reason or ''}".rstrip()
    if response.status_code in _RETRYABLE_STATUS:
        raise _Interrupted(message)
    raise DownloadError(f"{message}; check the URL, or pass another mirror")


def _range_start(response: requests.Response) -> int | None:
    match = re.match(r"bytes (\d+)-", response.headers.get("Content-Range", ""))
    return int(match.group(1)) if match else None


def _total_size(response: requests.Response, offset: int) -> int | None:
    """The full size of the remote file, when the server says it."""
    length = response.headers.get("Content-Length")
    if length is None or not length.isdigit():
        return None
    return int(length) + (offset if response.status_code == 206 else 0)


def _one_line(err: BaseException) -> str:
    return " ".join(str(err).split()) or type(err).__name__


# ---------------------------------------------------------------------------- cache


def cache_dir() -> Path:
    """The cache folder: $MINILTH_CACHE, or ~/.cache/minilth."""
    return Path(os.environ.get("MINILTH_CACHE") or Path.home() / ".cache" / "minilth").expanduser()


def is_offline() -> bool:
    """True when MINILTH_OFFLINE is 1, true or yes (any case): no network allowed."""
    return os.environ.get("MINILTH_OFFLINE", "").strip().lower() in {"1", "true", "yes"}


def cached_download(url: str, sha256: str | None = None, subdir: str = "",
                    filename: str | None = None) -> Path:
    """Return the path of `url`'s file in cache_dir()/subdir/filename, downloading it if absent.

    With MINILTH_OFFLINE set, only the cache is used and a missing file is a DownloadError.
    """
    dest = cache_dir() / subdir / (filename or url_filename(url))
    if not is_offline():
        try:
            return download(url, dest, sha256=sha256)
        except DownloadError:
            raise
        except OSError as err:  # the cache is a file, read-only, full...: network errors are DownloadErrors
            raise _cache_error(err) from None
    if not dest.is_file():
        raise DownloadError(f"{url} is not in the cache at {dest} and MINILTH_OFFLINE=1; "
                            "run once online or unset MINILTH_OFFLINE")
    if sha256 and file_sha256(dest) != sha256.lower():
        raise DownloadError(f"{dest} does not match its sha256 and MINILTH_OFFLINE=1; "
                            "delete it and run once online")
    return dest


def _cache_error(err: OSError) -> DownloadError:
    """The one-line error for a cache that cannot take a file: it names MINILTH_CACHE, the way out."""
    cache = cache_dir()
    where = f"MINILTH_CACHE={cache}" if os.environ.get("MINILTH_CACHE") else f"the cache folder {cache}"
    why = "is a file, not a folder" if cache.is_file() else f"cannot be written ({err.strerror or err})"
    return DownloadError(f"{where} {why}: set MINILTH_CACHE to a folder you can write to")


def url_filename(url: str) -> str:
    """The last part of a URL's path, e.g. 'RTE.zip' for https://host/glue/data/RTE.zip."""
    name = unquote(PurePosixPath(urlsplit(url).path).name)
    if not name:
        raise DownloadError(f"{url}: cannot name the file from the URL; pass filename=")
    return name


def install_file(source: Path, dest: Path) -> Path:
    """Return `dest` after copying `source` to it through a temporary name in dest's folder."""
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile(dir=dest.parent, prefix=f".{dest.name}.", suffix=".tmp",
                                     delete=False) as tmp:
        with open(source, "rb") as src:
            shutil.copyfileobj(src, tmp, CHUNK_BYTES)
    os.replace(tmp.name, dest)
    return dest


# ---------------------------------------------------------------------------- archives


def extract_archive(archive: Path, target: Path, member_root: str | None = None, replace: bool = False,
                    required: tuple[str, ...] = ()) -> Path:
    """Return `target` after unpacking a .zip, .tar, .tar.gz/.tgz (.tar.bz2, .tar.xz) archive into it.

    member_root: unpack only the members under this top folder of the archive, without the
    folder itself (e.g. "RTE" puts RTE.zip's RTE/train.tsv at target/train.tsv).
    Members that would land outside `target` (absolute paths, `..`, links leading out, alone or
    through other links) make the whole archive refused, and nothing of it is kept. The archive
    is unpacked into a temporary folder next to `target` and checked (it holds every file of
    `required`), then renamed into place. An existing `target` is returned as it is, or with
    `replace` moved aside for the new copy only once that is whole, then deleted: a failed
    download or unpacking never costs the old copy.
    """
    archive, target = Path(archive), Path(target)
    if target.is_dir() and not replace:
        return target
    if not archive.is_file():
        raise DownloadError(f"{archive}: archive not found")
    unpack = _unpacker_for(archive)
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{target.name}.", suffix=".partial"))
    old = staging.with_suffix(".old")  # where a replaced copy waits until the new one is in place
    try:
        unpack(archive, staging, member_root)
        missing = [name for name in required if not (staging / name).is_file()]
        if missing:
            raise DownloadError(f"{archive} lacks {', '.join(missing)}: is this the right file? delete it and run "
                                f"again")
        if replace and target.exists():
            os.rename(target, old)
        os.replace(staging, target)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        if old.exists() and not target.exists():
            os.rename(old, target)  # the old copy back in place
        elif target.is_dir() and not replace:  # another process finished the same extraction first
            return target
        raise
    shutil.rmtree(old, ignore_errors=True)
    return target


def _unpacker_for(archive: Path):
    name = archive.name.lower()
    if name.endswith(".zip"):
        return _unpack_zip
    if name.endswith((".tar", ".tar.gz", ".tgz", ".tar.bz2", ".tar.xz")):
        return _unpack_tar
    raise DownloadError(f"{archive}: unsupported archive type; expected .zip, .tar, .tar.gz or .tgz")


def _unpack_zip(archive: Path, staging: Path, member_root: str | None) -> None:
    try:
        zf = zipfile.ZipFile(archive)
    except zipfile.BadZipFile as err:
        raise DownloadError(f"{archive}: not a valid zip file ({err}); delete it and download again") from err
    with zf:
        infos = zf.infolist()
        selected = _select_members(archive, [info.filename for info in infos], member_root)
        for info in tqdm(infos, desc=f"unpack {archive.name}", unit="file", leave=False,
                         disable=not _show_bars):
            relative = selected.get(info.filename)
            if relative is None:
                continue
            dest = _checked_destination(archive, staging, relative)
            if info.is_dir():
                dest.mkdir(parents=True, exist_ok=True)
                continue
            # A zip "symlink" is written as a small file holding the link text (as zipfile
            # itself does), so no link is ever created from a zip.
            with zf.open(info) as src, open(dest, "wb") as out:
                shutil.copyfileobj(src, out, CHUNK_BYTES)


def _unpack_tar(archive: Path, staging: Path, member_root: str | None) -> None:
    try:
        tf = tarfile.open(archive, "r:*")
    except tarfile.TarError as err:
        raise DownloadError(f"{archive}: not a valid tar file ({err}); delete it and download again") from err
    with tf:
        members = tf.getmembers()
        selected = _select_members(archive, [m.name for m in members], member_root)
        for member in members:
            _check_tar_member(archive, member, selected, member_root)
        links = {}
        for member in tqdm(members, desc=f"unpack {archive.name}", unit="file", leave=False,
                         disable=not _show_bars):
            relative = selected.get(member.name)
            if relative is not None:
                dest = _write_tar_member(archive, tf, member, staging, relative)
                if member.issym():
                    links[member.name] = dest
    # Where a link leads depends on the links it goes through (a -> ., then b -> a/.. is the folder
    # above), and a later link can redirect an earlier one (c -> x/.., then x -> .): so each is
    # followed on disk once all are written. Files were safe meanwhile: each write is checked.
    for name, link in links.items():
        if not _resolves_inside(link, staging):
            _refuse(archive, name, f"is a link to {os.readlink(link)!r} that, through other links, "
                    "leads outside the folder or in a circle")


def _check_tar_member(archive: Path, member: tarfile.TarInfo, selected: dict[str, str],
                      member_root: str | None) -> None:
    """Refuse special files and links that lead outside the extracted tree."""
    if member.name not in selected:
        return
    if member.issym():
        link_dir = posixpath.dirname(selected[member.name])
        if member.linkname.startswith("/") or _escapes(posixpath.join(link_dir, member.linkname)):
            _refuse(archive, member.name, f"is a link to {member.linkname!r}")
    elif member.islnk():
        if _relative_member_path(archive, member.linkname, member_root) is None:
            _refuse(archive, member.name, f"is a hard link to {member.linkname!r}")
    elif not (member.isdir() or member.isreg()):
        _refuse(archive, member.name, "is a device or pipe")


def _write_tar_member(archive: Path, tf: tarfile.TarFile, member: tarfile.TarInfo,
                      staging: Path, relative: str) -> Path:
    dest = _checked_destination(archive, staging, relative)
    if member.isdir():
        dest.mkdir(parents=True, exist_ok=True)
    elif member.issym():
        os.symlink(member.linkname, dest)
    else:  # regular file or hard link: extractfile gives the bytes of both
        with tf.extractfile(member) as src, open(dest, "wb") as out:
            shutil.copyfileobj(src, out, CHUNK_BYTES)
    return dest


def _select_members(archive: Path, names: list[str], member_root: str | None) -> dict[str, str]:
    """Map each member name to its path relative to the target; refuse the archive if one escapes."""
    selected = {}
    for name in names:
        relative = _relative_member_path(archive, name, member_root)
        if relative is not None:
            selected[name] = relative
    if member_root is not None and not selected:
        raise DownloadError(f"{archive}: no folder {member_root!r} in the archive; "
                            "is this the right file?")
    return selected


def _relative_member_path(archive: Path, name: str, member_root: str | None) -> str | None:
    """The member's path inside the target, or None when it is outside member_root."""
    posix = name.replace("\\", "/")
    if posix.startswith("/") or re.match(r"[A-Za-z]:", posix) or _escapes(posix):
        _refuse(archive, name, "has an absolute path or leaves the folder with '..'")
    parts = [p for p in posixpath.normpath(posix).split("/") if p not in ("", ".")]
    if member_root is not None:
        if parts[:1] != [member_root]:
            return None
        parts = parts[1:]
    return "/".join(parts) or None


def _escapes(posix_path: str) -> bool:
    """True when a relative path climbs above its starting folder."""
    return posixpath.normpath(posix_path).split("/")[0] == ".."


def _checked_destination(archive: Path, staging: Path, relative: str) -> Path:
    """staging/relative, after checking that no link already written leads it outside staging."""
    dest = staging / relative
    # resolved before mkdir, so that no folder is ever created through a link leading out
    if not _resolves_inside(dest.parent, staging):
        _refuse(archive, relative, "goes through a link that leaves the folder")
    dest.parent.mkdir(parents=True, exist_ok=True)
    if dest.is_symlink():
        dest.unlink()  # a later member of the same name replaces the link, not its target
    return dest


def _resolves_inside(path: Path, staging: Path) -> bool:
    """True when `path`, its links followed as they are on disk now, lies inside staging (a loop is not)."""
    try:
        return path.resolve().is_relative_to(staging.resolve())
    except (OSError, RuntimeError):  # a loop of links: RuntimeError before Python 3.13, OSError after
        return False


def _refuse(archive: Path, member: str, why: str) -> None:
    raise DownloadError(f"{archive}: member {member!r} {why}; refusing to unpack an archive "
                        "that writes outside its target folder")
