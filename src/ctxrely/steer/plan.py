"""Moved: :mod:`ctxrely.engine.intervention` holds ``Intervention`` and ``SteerSpec`` (the engine runs
them, so they live below it). This alias keeps ``from ctxrely.steer.plan import Intervention`` working.

Example:
    >>> from ctxrely.steer.plan import Intervention
    >>> Intervention.parse().active
    False
"""

from ctxrely.engine.intervention import DECODES, Decode, Intervention, SteerSpec

__all__ = ["DECODES", "Decode", "Intervention", "SteerSpec"]
