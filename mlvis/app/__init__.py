"""The Streamlit glue of mlvis: the only part of the package that imports Streamlit.

- ``mlvis.app.state``: session-state keys shared by every page, ``init_state()`` and getters;
- ``mlvis.app.cache``: ``st.cache_resource`` / ``st.cache_data`` wrappers around the library;
- ``mlvis.app.widgets``: sidebar UI functions that draw controls and return plain values;
- ``mlvis.app.page``: what every page shares (``page_model()``, the demo scenes, the "Skip to Run" link);
- ``mlvis.app.jobs``: a long computation as a section (Run button, cost, progress, Stop, kept results);
- ``mlvis.app.budget_input``: the shared budget control (slider, exact entry, 1/255), returning a ``Budget``;
- ``mlvis.app.options``: widgets for the options a method exposes in the registry;
- one glue module per page: ``lab`` (Attack Lab, with its ``default_view`` and ``cooccurrence`` tables),
  ``histograms_page``, ``landscape_page``, ``profiles_page``, ``sweep_page``, ``hyperplane_page``,
  ``models_page``, ``runs_page``.

Import the submodules you need; this module itself imports nothing (no torch, no models).
"""
