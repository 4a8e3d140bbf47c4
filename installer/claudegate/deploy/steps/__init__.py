"""The steps playbooks are made of; :mod:`.registry` names them for the playbooks."""
