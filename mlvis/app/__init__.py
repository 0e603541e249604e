"""The Streamlit glue of mlvis: the only part of the package that imports Streamlit.

- ``mlvis.app.state``: session-state keys shared by every page, ``init_state()`` and getters;
- ``mlvis.app.cache``: ``st.cache_resource`` / ``st.cache_data`` wrappers around the library;
- ``mlvis.app.widgets``: sidebar UI functions that draw controls and return plain values.

Import the submodules you need; this module itself imports nothing (no torch, no models).
"""
