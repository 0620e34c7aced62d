"""CSI sources: one interface (``sample(batch, seed, device) -> ChannelBatch``) for every model."""
from .base import ChannelBatch, ChannelConfig, ChannelSource, build_channel, check_channel
from .rayleigh import CorrelatedRayleigh, IIDRayleigh, correlation_coefficient, exponential_correlation
from .tr38901 import CDLSource, TDLSource, TR38901Source, UMaSource, UMiSource

__all__ = ["ChannelBatch", "ChannelConfig", "ChannelSource", "build_channel", "check_channel", "CorrelatedRayleigh",
           "IIDRayleigh", "correlation_coefficient", "exponential_correlation", "CDLSource", "TDLSource",
           "TR38901Source", "UMaSource", "UMiSource"]
