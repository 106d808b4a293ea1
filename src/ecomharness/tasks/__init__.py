"""The task side: where tasks are found and checked, and where their documents come from.

- ``index``: every plugin's task directories, lm-eval's TaskManager over them, walks
  over its index;
- ``lint``: the one check of task YAML (static pass, group members, rendering);
- ``open``: ``open_tasks``, the prelude every evaluation shares, and name resolution;
- ``path``: the one directory lm-eval's ``--include_path`` takes (``tasks-path``);
- ``data``: ``load_task``, where each bundled task's documents come from.
"""
