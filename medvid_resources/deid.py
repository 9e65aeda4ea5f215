"""The de-identification secret as a resource: the salt behind pseudonyms, pseudonymous study
ids and per-patient date shifts (see :mod:`medvid.deid.header`).

A site sets ``MEDVID_DEID_SALT`` (the definitions pass it as ``dg.EnvVar``) and keeps it like a
password: the same salt gives the same pseudonyms on every machine and every day, and without it
nobody can recompute which patient a pseudonym stands for. A single machine without the variable
gets a random salt created once in a file beside the protected data (mode 0600); losing that
file changes every pseudonym from then on, so back it up with the pseudonym map.

The salt is never logged, shown in the UI, written to a table or exported.
"""

import os
import secrets
import time
from pathlib import Path

import dagster as dg
from pydantic import Field


class DeidentificationSecretError(RuntimeError):
    """No salt is configured (neither ``salt`` nor ``salt_file``); an environment problem."""


class DeidentificationResource(dg.ConfigurableResource):
    """Salt and options of header de-identification (DICOM PS3.15 Annex E basic profile)."""

    salt: str | None = Field(
        default=None,
        repr=False,
        description="Secret salt. Pass dg.EnvVar('MEDVID_DEID_SALT'); never logged.",
    )
    salt_file: str | None = Field(
        default=None,
        description="Used when `salt` is unset: file holding a random salt, created on first use"
        " (mode 0600). Keep it with the protected data.",
    )
    retain_patient_characteristics: bool = Field(
        default=False,
        description="Keep PatientAge/Sex/Size/Weight (Annex E option 113108).",
    )
    retain_device_identity: bool = Field(
        default=True,
        description="Keep Manufacturer and ManufacturerModelName (Annex E option 113109).",
    )

    def __repr__(self) -> str:
        return f"DeidentificationResource(salt_file={self.salt_file!r}, salt=<hidden>)"

    def get_salt(self) -> str:
        """The salt: ``salt`` if set, else the content of ``salt_file`` (created when absent).

        Raises:
            DeidentificationSecretError: neither is configured, or the file is empty.
        """
        salt = self.salt
        if isinstance(salt, dg.EnvVar):  # used outside a run: the EnvVar is not resolved yet
            salt = salt.get_value()
        if salt:
            return str(salt)
        if not self.salt_file:
            raise DeidentificationSecretError(
                "no de-identification salt: set MEDVID_DEID_SALT or configure salt_file"
            )
        path = Path(self.salt_file)
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            # O_EXCL: two processes starting at once cannot both create (and differ).
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            pass
        else:
            with os.fdopen(fd, "w") as stream:
                stream.write(secrets.token_hex(32))
        for _ in range(50):  # another process may be between creating and writing the file
            if salt := path.read_text().strip():
                return salt
            time.sleep(0.02)
        raise DeidentificationSecretError(f"salt file {path} is empty")
