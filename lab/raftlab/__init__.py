"""raftlab: systemd-nspawn test hosts that behave like the VMs raftnode deploys onto.

Library entry points (the CLI in cli.py is a thin layer over these):

- ``up_lab(name, hosts, ...) -> (Lab, UpReport)`` creates and boots hosts; ``destroy_lab(name)``
  removes everything; ``Lab.open(name)`` reattaches to a running lab from any process.
- ``Lab`` methods: ``exec``, ``stop``, ``kill``, ``start``, ``isolate``, ``cut``, ``heal``,
  ``pause``, ``resume``, ``status``, ``inventory``.
- ``ensure_image(ImageRecipe())`` builds or reuses the cached guest image.
"""

from .addressing import LabHost, LabNetwork
from .errors import LabError
from .image_build import BuiltImage, ensure_image
from .image_recipe import ImageRecipe
from .lab import HostStatus, Lab, UpReport, destroy_lab, up_lab
from .teardown import leftovers

__all__ = [
    "BuiltImage",
    "HostStatus",
    "ImageRecipe",
    "Lab",
    "LabError",
    "LabHost",
    "LabNetwork",
    "UpReport",
    "destroy_lab",
    "ensure_image",
    "leftovers",
    "up_lab",
]
