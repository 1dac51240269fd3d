"""Where the tests find the real ContainerPilot 3.8.0 and the config the images ship."""
import os
import shutil

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SHIPPED = os.path.join(REPO, "docker", "containerpilot.json5")


def find_cp():
    """$MYSQLPILOT_CONTAINERPILOT, `containerpilot` on PATH, or ../shared/bin/containerpilot; None if none."""
    for cand in (os.environ.get("MYSQLPILOT_CONTAINERPILOT"), shutil.which("containerpilot"),
                 os.path.join(os.path.dirname(REPO), "shared", "bin", "containerpilot")):
        if cand and os.access(cand, os.X_OK):
            return cand
    return None


CP = find_cp()
