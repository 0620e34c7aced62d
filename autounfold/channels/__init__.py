"""CSI sources: one interface (``sample(batch, seed, device) -> ChannelBatch``) for every model."""
from .base import ChannelBatch, ChannelSource, ChannelStream, check_channel
from .rayleigh import CorrelatedRayleigh, IIDRayleigh, correlation_coefficient, exponential_correlation

__all__ = ["ChannelBatch", "ChannelSource", "ChannelStream", "check_channel", "CorrelatedRayleigh",
           "IIDRayleigh", "correlation_coefficient", "exponential_correlation"]
