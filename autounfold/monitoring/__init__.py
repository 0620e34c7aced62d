"""Drift monitoring of a deployed model: channel covariance shift, shadow metric against the
classical reference, learned-parameter drift and gradient-norm alarms; triggers recorded once."""
from .drift import (covariance_shift, estimate_angular_spread, gradient_norm, monitored_covariance, parameter_drift,
                    transmit_covariance)
from .monitor import Baseline, EventLog, MonitorConfig, compute_baseline, drifting_windows, monitor_windows

__all__ = ["Baseline", "EventLog", "MonitorConfig", "compute_baseline", "covariance_shift", "drifting_windows",
           "estimate_angular_spread", "gradient_norm", "monitor_windows", "monitored_covariance", "parameter_drift",
           "transmit_covariance"]
