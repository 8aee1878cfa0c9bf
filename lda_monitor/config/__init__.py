"""Every setting a user gives, declared once with its help text: the callback's and the audit's
configs (:mod:`.monitor`, :mod:`.audit`, both the measurement plus their own keys), the config file
they share (:mod:`.files`, :mod:`.front_ends`). It sits below the front ends, which import it and
never each other."""
