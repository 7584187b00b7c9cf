"""--add-user: a passwd record for whatever uid the container runs as.

ssh looks its user up by uid and refuses to run without a record, so an
image started with an arbitrary `--user` needs one; the image leaves
/etc/passwd writable for this, as upstream's does.
"""

import os
from pathlib import Path


def add_user(passwd: Path = Path("/etc/passwd")) -> bool:
    """Append `git-sync:x:UID:GID::HOME:/sbin/nologin` unless the uid has a record.

    Returns whether a record was added; raises OSError if the file can't be written.
    """
    uid, gid = os.getuid(), os.getgid()
    try:
        records = passwd.read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        records = []
    if any(line.split(":")[2:3] == [str(uid)] for line in records):
        return False
    home = os.environ.get("HOME") or os.getcwd()
    with passwd.open("a", encoding="utf-8") as f:
        f.write(f"git-sync:x:{uid}:{gid}::{home}:/sbin/nologin\n")
    return True
