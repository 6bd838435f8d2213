"""The finding model (:mod:`.model`) and its renderings: OCSF 2004 (:mod:`.ocsf`) and the text story (:mod:`.story`)."""
