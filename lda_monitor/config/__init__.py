"""Every setting a user gives, declared once with its help text: the callback's and the audit's
configs (:mod:`.monitor`, :mod:`.audit`, both the measurement plus their own keys) and the config
file they share (:mod:`.files`, :mod:`.front_ends`); the model-loading options (:mod:`.models`) and
the server's (:mod:`.server`). Flags, YAML keys and the config table are generated from these
declarations. It sits below the front ends, which import it and never each other."""
