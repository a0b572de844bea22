"""Azurite, the Azure Storage emulator, started on 127.0.0.1 for tutorials, tests and benchmarks.

Azurite is the npm package ``azurite`` (``npm install -g azurite``). It speaks the Azure blob
REST API, so ``register_azure_blob_container`` reaches it through adlfs exactly as it reaches
an Azure account, with the emulator's well-known development account.

Examples
--------
>>> with Azurite(tmp_folder) as azurite:                                    # doctest: +SKIP
...     azurite.create_container("sampledata")
...     store = Datastore.register_azure_blob_container(
...         ws, "mnist_datastore", "sampledata", azurite.account_name,
...         account_key=azurite.account_key, endpoint=azurite.endpoint)
"""

from __future__ import annotations

import atexit
import contextlib
import re
import shutil
import subprocess
import time
from pathlib import Path

#: The emulator's development account and key: public, the same in every Azurite.
ACCOUNT_NAME = "devstoreaccount1"
ACCOUNT_KEY = (
    "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
)
_LISTENING = re.compile(r"listens on (http://127\.0\.0\.1:\d+)")


def find_azurite() -> str | None:
    """The ``azurite-blob`` executable: on PATH, or in a ``node_modules`` here or above."""
    found = shutil.which("azurite-blob")
    if found:
        return found
    for folder in [Path.cwd(), *Path.cwd().parents]:
        candidate = folder / "node_modules" / ".bin" / "azurite-blob"
        if candidate.is_file():
            return str(candidate)
    return None


class Azurite:
    """An Azurite blob service on a free port of 127.0.0.1, keeping its data in ``folder``.

    Parameters
    ----------
    folder : str or Path
        Where Azurite keeps its blobs and its log (created when missing).
    timeout : float, default 60
        Seconds to wait for it to listen.

    Attributes
    ----------
    endpoint : str
        The blob service URL of the development account (``http://127.0.0.1:PORT/devstoreaccount1``),
        to pass as ``endpoint`` to ``register_azure_blob_container``.
    account_name, account_key : str
        The development account.
    """

    account_name = ACCOUNT_NAME
    account_key = ACCOUNT_KEY

    def __init__(self, folder: str | Path, timeout: float = 60) -> None:
        binary = find_azurite()
        if binary is None:
            raise FileNotFoundError(
                "azurite-blob is not installed: npm install -g azurite (the Azure Storage "
                "emulator; needs Node.js)"
            )
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        log = self.folder / "azurite.log"
        with open(log, "wb") as out:
            # Port 0: Azurite takes a free port and says which; nothing else can take it first.
            self.process = subprocess.Popen(
                [binary, "--blobHost", "127.0.0.1", "--blobPort", "0", "--location",
                 str(self.folder), "--silent", "--loose", "--skipApiVersionCheck",
                 "--disableTelemetry"],
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
            )  # fmt: skip
        atexit.register(self.stop)  # never left running by a script or kernel that ends
        deadline = time.monotonic() + timeout
        while True:
            found = _LISTENING.search(log.read_text(errors="replace"))
            if found:
                self.url = found.group(1)
                break
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"Azurite did not start: {log.read_text(errors='replace')}")
            time.sleep(0.05)
        self.endpoint = f"{self.url}/{ACCOUNT_NAME}"

    @property
    def connection_string(self) -> str:
        """A connection string of the development account."""
        return f"BlobEndpoint={self.endpoint};AccountName={ACCOUNT_NAME};AccountKey={ACCOUNT_KEY}"

    def create_container(self, name: str) -> None:
        """Create the container ``name`` (nothing happens when it exists)."""
        from azure.core.exceptions import ResourceExistsError
        from azure.storage.blob import BlobServiceClient

        service = BlobServiceClient.from_connection_string(self.connection_string)
        with service, contextlib.suppress(ResourceExistsError):
            service.create_container(name)

    def container_sas(self, container: str, permission: str = "rl", hours: float = 1) -> str:
        """A SAS token for ``container`` with ``permission`` (``r`` read, ``l`` list, ...)."""
        from datetime import datetime, timedelta, timezone

        from azure.storage.blob import ContainerSasPermissions, generate_container_sas

        return generate_container_sas(
            ACCOUNT_NAME,
            container,
            account_key=ACCOUNT_KEY,
            permission=ContainerSasPermissions.from_string(permission),
            expiry=datetime.now(timezone.utc) + timedelta(hours=hours),
        )

    def stop(self) -> None:
        """Stop Azurite (its data stays in ``folder``)."""
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

    def __enter__(self) -> Azurite:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def __repr__(self) -> str:
        return f"Azurite(endpoint={self.endpoint!r}, pid={self.process.pid})"
