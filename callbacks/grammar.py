"""The words of the strength grammar (`callbacks.parse_strength` parses it), without Keras.

The commands read `STRENGTH_HELP` for their `--help`, which must not import
TensorFlow; `strength.py` holds the parser and the callbacks.

>>> "adaptive:SIGNAL" in STRENGTH_HELP and "shaped:SIGNAL" in STRENGTH_HELP and all(signal in STRENGTH_HELP for signal in SIGNALS)
True
"""

# run-mnist's default strength: the config that won the strength study across its three data sets
# (docs/design.md, decision 37). The controllers stay available by name.
DEFAULT_STRENGTH = "constant:0.5"
# The built-in signals of AdaptiveStrength (strength.SIGNAL_KEYS says which log keys each reads).
SIGNALS = ("accuracy_gap", "loss_ratio", "probe_gap", "probe_loss_gap", "probe_confidence")

# Adaptive runs start here: the controller then moves it by 0.05 per epoch.
ADAPTIVE_INITIAL_STRENGTH = 0.3
# Hold it while the first epochs' fast learning dominates the gap signal.
ADAPTIVE_WARMUP_EPOCHS = 2
# `shaped`: a weak-to-strong ramp whose ceiling starts here and is moved by the controller on this signal.
SHAPED_INITIAL_CEILING = 0.75
SHAPED_SIGNAL = "probe_gap"
STRENGTH_HELP = (
    "'shaped' (a ramp from weak to strong whose ceiling a controller moves, then a weak final stretch; "
    "shaped:SIGNAL picks its signal), 'adaptive' (closed-loop control; adaptive:SIGNAL picks its signal: "
    "accuracy_gap, loss_ratio, probe_gap, probe_loss_gap, probe_confidence), 'off', a number or 'constant:X', "
    "or a schedule: linear:START:END:EPOCHS, cosine:START:END:EPOCHS, step:V1,V2,...:EVERY."
)
