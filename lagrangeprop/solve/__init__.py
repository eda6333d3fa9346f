"""The interpreters over the schedule: forward, adjoint, tangent, second order; Solution."""
