"""The proposed method (Verinaz-Jadan, Yan, Higgitt, Dragotti): placeholder until implemented."""
