"""tagserve as a Label Studio ML backend, mounted at ``/labelstudio``: the labeling config
is read (:mod:`.config`), tasks are tagged through the same batchers and text pipeline as
``POST /tag`` and answered as Label Studio predictions (:mod:`.predict`), over the routes of
Label Studio's ML-backend protocol (:mod:`.routes`)."""
