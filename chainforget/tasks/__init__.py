"""Tasks: data sets of examples with demographic groups (see ``chainforget.tasks.base``)."""
