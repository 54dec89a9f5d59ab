"""The command line entry points: ``inclr-train`` (:mod:`.train_net`) and ``inclr-export``
(:mod:`.export_model`), installed as console scripts by setup.py; ``tools/train_net.py`` and
``tools/export_model.py`` in a checkout run the same functions."""
