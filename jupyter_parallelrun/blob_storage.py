"""Azure blob containers: how to reach one, list it, and check it before a run.

A blob datastore is reached through fsspec's ``az`` protocol (the ``adlfs`` package, which
brings ``azure-storage-blob``). Everything here takes plain data (account, key or SAS token,
endpoint), never a Datastore, so that the engine's workers can use it from a mini-batch's spec.
Credentials only ever travel inside a connection string held in memory or in the workspace
store: never on a command line, never in a message shown to the user. The workers' downloads
are the engine's (``engine/blob_get.py``).
"""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import urlsplit

from .storage import GLOB_CHARS, require_adlfs

#: The suffix of Azure's public cloud, as Azure's ``endpoint`` default.
AZURE_ENDPOINT = "core.windows.net"
#: How long the check at submit waits for the storage service before calling it unreachable.
CHECK_TIMEOUT = 10
_CONTAINER_NAME = re.compile(r"^(?!.*--)[a-z0-9][a-z0-9-]{1,61}[a-z0-9]$")
_ACCOUNT_NAME = re.compile(r"^[a-z0-9]{3,24}$")


def blob_endpoint(account_name: str, protocol: str | None, endpoint: str | None) -> str:
    """The URL of the account's blob service.

    ``endpoint`` is Azure's: a domain suffix (``core.windows.net``, the default), giving
    ``{protocol}://{account_name}.blob.{endpoint}``. It may also be a whole URL, such as the
    Azure Storage emulator's ``http://127.0.0.1:10000/devstoreaccount1``; a URL without a path
    gets ``/{account_name}`` (the emulator's path-style addresses).
    """
    if endpoint and "://" in endpoint:
        url = endpoint.rstrip("/")
        return url if urlsplit(url).path else f"{url}/{account_name}"
    return f"{protocol or 'https'}://{account_name}.blob.{endpoint or AZURE_ENDPOINT}"


def check_endpoint(protocol: str | None, endpoint: str | None) -> None:
    """Raise ValueError for an ``endpoint`` URL that is not http(s) or contradicts ``protocol``."""
    if not endpoint or "://" not in endpoint:
        return
    parts = urlsplit(endpoint)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ValueError(
            "endpoint must be a domain suffix like 'core.windows.net' or an http(s) URL like "
            f"'http://127.0.0.1:10000/devstoreaccount1'; got {endpoint!r}"
        )
    if protocol is not None and protocol != parts.scheme:
        raise ValueError(
            f"protocol={protocol!r} contradicts endpoint={endpoint!r}; leave protocol as None "
            "when the endpoint is a URL"
        )


def container_spec(
    container_name: str,
    account_name: str,
    sas_token: str | None,
    account_key: str | None,
    protocol: str | None,
    endpoint: str | None,
) -> dict[str, Any]:
    """The datastore spec that reaches a blob container, once its settings are checked.

    Raises ValueError naming the first setting Azure would refuse (container and account
    names by Azure's rules, ``protocol``, ``endpoint``, empty credentials)."""
    for parameter, value in (("container_name", container_name), ("account_name", account_name)):
        if not isinstance(value, str) or not value.strip():
            raise ValueError(f"{parameter} must be a non-empty string; got {value!r}")
    if not _CONTAINER_NAME.match(container_name):
        raise ValueError(
            f"container_name must be 3-63 lowercase letters, digits and single hyphens, "
            f"starting and ending with a letter or digit; got {container_name!r}"
        )
    if not _ACCOUNT_NAME.match(account_name):
        raise ValueError(
            f"account_name must be 3-24 lowercase letters and digits; got {account_name!r}"
        )
    if protocol not in (None, "https", "http"):
        raise ValueError(f'protocol must be None, "https" or "http"; got {protocol!r}')
    for parameter, value in (
        ("sas_token", sas_token),
        ("account_key", account_key),
        ("endpoint", endpoint),
    ):
        if value is not None and (not isinstance(value, str) or not value.strip()):
            raise ValueError(f"{parameter} must be a non-empty string; got {value!r}")
    check_endpoint(protocol, endpoint)
    return {
        "datastore_type": "AzureBlob",
        "root": f"az://{container_name}",
        "container_name": container_name,
        "account_name": account_name,
        "sas_token": sas_token,
        "account_key": account_key,
        "protocol": protocol,
        "endpoint": endpoint,
    }


def connection_string(
    account_name: str,
    account_key: str | None,
    sas_token: str | None,
    protocol: str | None,
    endpoint: str | None,
) -> str:
    """An Azure storage connection string for the account (anonymous without key or token)."""
    parts = [f"BlobEndpoint={blob_endpoint(account_name, protocol, endpoint)}"]
    if account_key:
        parts += [f"AccountName={account_name}", f"AccountKey={account_key}"]
    elif sas_token:
        parts.append(f"SharedAccessSignature={sas_token.lstrip('?')}")
    return ";".join(parts)


def check_container(name: str, spec: dict[str, Any], timeout: float = CHECK_TIMEOUT) -> None:
    """Check, once and without retries, that the container of datastore spec ``spec`` can be
    listed with its credentials; raise a clear error naming what is wrong otherwise.

    Raises
    ------
    ImportError
        adlfs is not installed.
    ConnectionError
        The account's blob service cannot be reached (wrong endpoint, service down).
    PermissionError
        The service refuses the credentials (wrong account_key, expired or narrow sas_token).
    FileNotFoundError
        The container does not exist.
    """
    require_adlfs(name)
    from azure.core.exceptions import (
        ClientAuthenticationError,
        HttpResponseError,
        ResourceNotFoundError,
        ServiceRequestError,
        ServiceResponseError,
    )
    from azure.storage.blob import ContainerClient

    account, container = spec["account_name"], spec["container_name"]
    url = blob_endpoint(account, spec.get("protocol"), spec.get("endpoint"))
    where = f"datastore {name!r} (account_name={account!r} at {url})"
    credential = (
        "account_key" if spec.get("account_key") else "sas_token" if spec.get("sas_token") else ""
    )
    client = ContainerClient.from_connection_string(
        connection_string(
            account,
            spec.get("account_key"),
            spec.get("sas_token"),
            spec.get("protocol"),
            spec.get("endpoint"),
        ),
        container,
        retry_total=0,
        connection_timeout=timeout,
        read_timeout=timeout,
    )
    try:
        with client:
            next(iter(client.list_blobs(results_per_page=1).by_page()), None)
    except ResourceNotFoundError as error:
        if getattr(error, "error_code", None) in ("ContainerNotFound", "ResourceNotFound", None):
            raise FileNotFoundError(
                f"{where}: container_name={container!r} does not exist in the account; "
                "create it or register the datastore with an existing container"
            ) from None
        raise
    except (ServiceRequestError, ServiceResponseError) as error:
        reason = str(error).splitlines()[0] if str(error) else type(error).__name__
        raise ConnectionError(
            f"{where} cannot be reached: {reason}. Check account_name, endpoint and protocol "
            "(the emulator's endpoint looks like 'http://127.0.0.1:10000/devstoreaccount1')"
        ) from None
    except (ClientAuthenticationError, HttpResponseError) as error:
        if getattr(error, "status_code", None) not in (401, 403):
            raise
        code = getattr(error, "error_code", None) or error.status_code
        code = getattr(code, "value", code)  # StorageErrorCode.X reads as Azure's own name
        refused = f"the {credential} given" if credential else "anonymous access (no credential)"
        raise PermissionError(
            f"{where} refuses {refused} to list container_name={container!r} ({code}); pass "
            "the account's account_key, or a sas_token with read and list permissions"
        ) from None


def list_blobs(fs: Any, url: str) -> dict[str, dict]:
    """The blobs at ``url`` (``az://container/path``: a blob, a folder or a glob) as
    ``{url: info}``, from listings only: no request per blob. A folder, or a glob's match that
    is a folder, stands for every blob under it."""
    if GLOB_CHARS.search(url):
        found: dict[str, dict] = {}
        for path, info in fs.glob(url, detail=True).items():
            found.update({path: info} if info.get("type") == "file" else fs.find(path, detail=True))
    elif fs.isfile(url):
        found = {url: fs.info(url)}
    else:
        found = fs.find(url, detail=True)
    return {"az://" + fs._strip_protocol(path): info for path, info in found.items()}
