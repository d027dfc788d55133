"""Synthetic defect images (``synth``) and datasets on disk (``dataset``)."""
